"""The per-component sections of the settings: `settings().llm`, `.browser`, `.sandbox`, `.s3`,
`.runtime`, `.site`, `.mcp`.

Each section reads, highest first: its environment variables (ADP_<SECTION>_<NAME>, or the
name a field's `env` alias gives, e.g. GEMINI_API_KEY as in the seed), the config file's table
of the section's name (`[llm]`, `[browser]`, ...; keys are the field names), then the defaults.
Flags of a command go to the command's own options, not here. docs/configuration.md is generated
from these classes and the root Settings (core/settings.py: settings_table), and a test keeps it
equal, so a field added here is documented there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def env(*names: str) -> Any:
    """A field read from these environment variables (instead of its section's prefix)."""
    return AliasChoices(*names)


class Section(BaseSettings):
    """A component's settings. Its init values are the config file's table (never flags), so
    the environment comes first and then the file."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_ignore_empty=True, populate_by_name=True
    )
    name: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        """The section as this mapping of environment variables alone says (no process
        environment, no config file): what a child process given `environ` would read."""
        values = {}
        for field in cls.model_fields:
            found = [environ[n] for n in cls.env_names(field) if environ.get(n)]
            if found:
                values[field] = found[0]
        return cls.model_validate(values)

    @classmethod
    def env_names(cls, field: str) -> list[str]:
        """The environment variables a field is read from."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return [str(c) for c in alias.choices if str(c).isupper()]
        return [f"{cls.model_config.get('env_prefix', '')}{field}".upper()]


class LlmSettings(Section):
    """The LLM endpoints and how calls are made (runtimes/llm/)."""

    model_config = SettingsConfigDict(env_prefix="ADP_LLM_")
    name: ClassVar[str] = "llm"

    provider: str | None = Field(
        None,
        description="Use only this provider of the chain (custom, gemini, deepseek, "
        "openai, vllm, local).",
    )
    base_url: str | None = Field(
        None,
        description="An OpenAI-compatible endpoint (the provider `custom`), e.g. "
        "http://host:8000/v1.",
    )
    model: str | None = Field(None, description="The model `custom` asks for.")
    api_key: SecretStr | None = Field(None, description="The API key of `custom`; never logged.")
    temperature: float = Field(
        0.0, ge=0, le=2, description="Sampling temperature of calls whose task sets none."
    )
    max_tokens: int = Field(
        512, gt=0, description="Most tokens a reply may have (raise it for reasoning models)."
    )
    timeout: float = Field(60.0, gt=0, description="Seconds one call may take.")
    attempts: int = Field(4, ge=1, description="Tries per provider before a call fails over.")
    cache: str | None = Field(
        None,
        description="Cache replies: 1/true (in $ADP_HOME/llm-cache.sqlite3) or a .sqlite3 "
        "path. Off by default.",
    )
    tokens: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Ask for the prompt's and the completion's token ids and logprobs "
        "(docs/training.md): auto asks the endpoints known to return them (`vllm`: ids and "
        "logprobs; `local`: logprobs), on asks `custom` too (a vLLM, SGLang or stub server "
        "of yours), off asks none and records none. Hosted providers are never asked.",
    )
    model_revision: str | None = Field(
        None,
        description="The served weights' revision (e.g. a trainer's checkpoint step), "
        "recorded on every LLM call; default: the endpoint's system_fingerprint.",
    )
    port: int = Field(8088, description="Port of the embedded model server (`adp llm up`).")
    stub_port: int = Field(8089, description="Port of `adp llm-stub` (0: a free one).")
    vllm_url: str | None = Field(
        None,
        validation_alias=env("vllm_url", "ADP_VLLM_URL"),
        description="A vLLM server's OpenAI endpoint (the provider `vllm`).",
    )
    vllm_model: str | None = Field(
        None,
        validation_alias=env("vllm_model", "ADP_VLLM_MODEL"),
        description="The model vLLM serves (default: ADP_LLM_MODEL, else the local model's name).",
    )
    gemini_api_key: SecretStr | None = Field(
        None,
        validation_alias=env("gemini_api_key", "GEMINI_API_KEY"),
        description="Enables the provider `gemini`; never logged.",
    )
    gemini_api_url: str = Field(
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        validation_alias=env("gemini_api_url", "GEMINI_API_URL"),
        description="Gemini's OpenAI-compatible endpoint.",
    )
    gemini_model: str = Field(
        "gemini-2.0-flash",
        validation_alias=env("gemini_model", "GEMINI_MODEL"),
        description="The Gemini model.",
    )
    deepseek_api_key: SecretStr | None = Field(
        None,
        validation_alias=env("deepseek_api_key", "DEEPSEEK_API_KEY"),
        description="Enables the provider `deepseek`; never logged.",
    )
    deepseek_api_url: str = Field(
        "https://api.deepseek.com/v1",
        validation_alias=env("deepseek_api_url", "DEEPSEEK_API_URL"),
        description="DeepSeek's endpoint.",
    )
    deepseek_model: str = Field(
        "deepseek-chat",
        validation_alias=env("deepseek_model", "DEEPSEEK_MODEL"),
        description="The DeepSeek model.",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=env("openai_api_key", "OPENAI_API_KEY"),
        description="Enables the provider `openai`; never logged.",
    )
    openai_api_base: str = Field(
        "https://api.openai.com/v1",
        validation_alias=env("openai_api_base", "OPENAI_API_BASE"),
        description="OpenAI's endpoint.",
    )
    openai_model: str = Field(
        "gpt-4o-mini",
        validation_alias=env("openai_model", "OPENAI_MODEL"),
        description="The OpenAI model.",
    )


class RuntimeSettings(Section):
    """How agents run tasks (runtimes/, streams/runtime/)."""

    model_config = SettingsConfigDict(env_prefix="ADP_")
    name: ClassVar[str] = "runtime"

    tool_protocol: Literal["auto", "tools", "text"] = Field(
        "auto",
        description="How tools are offered to the model: native function calls "
        "(tools), a JSON-in-text dialect (text), or tools where the endpoint takes them (auto).",
    )
    min_share: float = Field(
        0.2,
        ge=0,
        description="Least share of task starts each lower priority lane with work "
        "gets (`adp runtime --min-share`).",
    )
    max_outage: float = Field(
        3600.0,
        ge=0,
        description="Seconds a task may wait, paused, for an unavailable LLM endpoint, "
        "sandbox or browser before it ends as an `infrastructure` failure "
        "(`adp runtime --max-outage`; 0: at the first outage).",
    )
    outage_backoff_min: float = Field(
        5.0, gt=0, description="First wait of a paused runtime before it probes again."
    )
    outage_backoff_max: float = Field(
        300.0, gt=0, description="Longest wait of a paused runtime between two probes."
    )


class BrowserSettings(Section):
    """The web runtime's Chromium (runtimes/tools/browser.py)."""

    model_config = SettingsConfigDict(env_prefix="ADP_BROWSER_")
    name: ClassVar[str] = "browser"

    chromium: str = Field(
        "/usr/bin/chromium",
        validation_alias=env("chromium", "ADP_CHROMIUM"),
        description="The Chromium executable Playwright drives.",
    )
    browsers: int = Field(
        1,
        ge=1,
        validation_alias=env("browsers", "ADP_BROWSERS"),
        description="Chromium processes in a web runtime's pool.",
    )
    text_limit: int = Field(4000, gt=0, description="Characters of page text an observation keeps.")
    egress: Literal["public", "open"] = Field(
        "public",
        description="What the browser may reach: public (the public internet and egress_allow; "
        "no private, loopback, link-local or cloud metadata address, on any request or "
        "redirect) or open (anything; only where the browser must reach an internal network).",
    )
    egress_allow: str = Field(
        "",
        description="Exceptions to the egress policy, comma-separated: addresses or networks "
        "(127.0.0.1:8090, 10.20.0.0/16), host names (docs.corp.example, *.corp.example), "
        "each with an optional :port. `adp demo` allows its site.",
    )


class SandboxSettings(Section):
    """The code sandbox's Python environment (runtimes/tools/sandbox/)."""

    model_config = SettingsConfigDict(env_prefix="ADP_SANDBOX_")
    name: ClassVar[str] = "sandbox"

    env: str | None = Field(
        None,
        description="A built environment's folder (`adp sandbox build --into DIR`), or "
        "`none` for the bare python3; default: the one built for the requirements file.",
    )
    requirements: Path | None = Field(
        None,
        description="The requirements file of the environment (default: the shipped "
        "numpy, pandas, matplotlib, scipy, scikit-learn, sympy).",
    )
    bwrap: str = Field("/usr/bin/bwrap", description="The bubblewrap executable.")

    docker_base: str = Field(
        "python:3.11-slim",
        description="Base image of the docker backend's image (the requirements are "
        "pip-installed on top).",
    )
    docker_network: str | None = Field(
        None,
        description="Network the docker backend builds its image on (`host` where the engine "
        "has no default bridge); default: the engine's. Programs always run with none.",
    )

    @field_validator("requirements")
    @classmethod
    def _resolve(cls, path: Path | None) -> Path | None:
        return path.expanduser().resolve() if path is not None else None

    @property
    def bare(self) -> bool:
        """ADP_SANDBOX_ENV=none: programs run with the bare python3."""
        return (self.env or "").strip().lower() == "none"


class S3Settings(Section):
    """The S3 sink and S3 sources (connectors/sinks/s3.py); credentials come from the usual AWS
    variables or files, read by botocore, never by the platform."""

    model_config = SettingsConfigDict(env_prefix="ADP_S3_")
    name: ClassVar[str] = "s3"

    endpoint_url: str | None = Field(
        None, description="An S3-compatible endpoint (MinIO, moto, ...); default: AWS."
    )
    layout: Literal["per-task", "jsonl-hourly"] = Field(
        "per-task",
        description="per-task: one object per trajectory; jsonl-hourly: one JSON "
        "line per trajectory in hourly parts.",
    )
    create_bucket: bool = Field(False, description="Create the bucket when it does not exist.")
    region: str = Field(
        "us-east-1",
        validation_alias=env("region", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="The bucket's region.",
    )


class SiteSettings(Section):
    """The demo web site the sample web tasks browse (app/site_server.py)."""

    model_config = SettingsConfigDict(env_prefix="ADP_SITE_")
    name: ClassVar[str] = "site"

    port: int = Field(8090, description="Port of the demo site (`adp demo`).")
    dir: Path | None = Field(None, description="Serve this folder instead of the shipped site.")
    log: bool = Field(False, description="Log every request the site answers.")


MCP_SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")


class McpServerSettings(BaseModel):
    """One MCP server (`[mcp.servers.NAME]`): a command started over stdio, or a streamable
    HTTP url. Values of `env` and `headers` are secrets: they reach the server and nothing else
    (never a step, a log line or an export)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | None = Field(None, description="The program of a stdio server.")
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Variables the stdio server gets besides PATH, HOME, LOGNAME, SHELL, TERM "
        "and USER (the runtime's own environment, API keys included, is not passed on).",
    )
    cwd: Path | None = Field(None, description="Working directory of the stdio server.")
    url: str | None = Field(None, description="The endpoint of a streamable HTTP server.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="HTTP headers of every request (e.g. Authorization)."
    )
    timeout: float = Field(60.0, gt=0, description="Seconds one tool call may take.")
    startup_timeout: float = Field(
        30.0, gt=0, description="Seconds the server has to start and list its tools."
    )
    tools: list[str] | None = Field(
        None, description="Offer only these of its tools (default: all it lists)."
    )
    session: Literal["shared", "task"] = Field(
        "shared",
        description="shared: one connection for all tasks of a runtime; task: a connection of "
        "its own per task (a new process for stdio), for servers whose state must not pass "
        "between tasks.",
    )
    default: bool = Field(
        True,
        description="Offer its tools to tasks whose expected_tools name no MCP server or tool "
        "(false: only to tasks that name it).",
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (stdio) or `url` (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def describe(self) -> str:
        """Where the server is, for messages: the command or the url, never a secret."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return str(self.url).split("?")[0]


class McpSettings(Section):
    """Model Context Protocol servers whose tools the runtimes offer (runtimes/tools/mcp/)."""

    model_config = SettingsConfigDict(env_prefix="ADP_MCP_")
    name: ClassVar[str] = "mcp"

    servers: dict[str, McpServerSettings] = Field(
        {},
        description="The servers by name, in the config file as `[mcp.servers.NAME]` tables "
        "(docs/mcp.md); the environment variable holds the same as JSON.",
    )

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServerSettings]) -> dict[str, McpServerSettings]:
        for name in servers:
            if len(name) > 32 or not MCP_SERVER_NAME.match(name):
                raise ValueError(
                    f"server name {name!r}: use up to 32 letters, digits, '-' and single '_' "
                    "(tool names are NAME__TOOL)"
                )
        return servers


SECTIONS: tuple[type[Section], ...] = (
    LlmSettings,
    RuntimeSettings,
    BrowserSettings,
    SandboxSettings,
    S3Settings,
    SiteSettings,
    McpSettings,
)
