"""The platform's settings: one class, read by every command.

Precedence, highest first: command-line flags > ADP_* environment variables > the config file
(TOML, named by --config or ADP_CONFIG) > defaults. Each field's environment variable is ADP_
plus its name in capitals (bootstrap -> ADP_BOOTSTRAP); in the config file its key is the
field name:

    # adp.toml
    bootstrap = "kafka-1.example.com:9093,kafka-2.example.com:9093"
    security_protocol = "SASL_SSL"
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_username = "adp-runtime"
    sasl_password = "..."          # or ADP_SASL_PASSWORD; never printed (SecretStr)
    ssl_cafile = "ca.pem"          # relative paths are relative to the config file

    [llm]                          # a component's section: settings().llm (core/sections.py)
    base_url = "http://vllm:8000/v1"
    max_tokens = 4096

The root fields are what every component shares (Kafka, paths, ports); each component's own
knobs are a section (settings().llm, .runtime, .browser, .sandbox, .s3, .site, .mcp), read
the same way. Product code reads ADP_* variables only through this class. The settings tables of the
docs are generated from it (settings_table, sections_table) and a test keeps them equal.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adp.core.errors import BadInput
from adp.core.sections import (
    SECTIONS,
    BrowserSettings,
    LlmSettings,
    McpSettings,
    RuntimeSettings,
    S3Settings,
    SandboxSettings,
    Section,
    SiteSettings,
)

S = TypeVar("S", bound=Section)
MiB = 1024 * 1024
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SettingsError(BadInput):
    """A setting is missing or invalid; the message names it and where it came from."""


class Settings(BaseSettings):
    # an empty ADP_* variable counts as unset (ADP_PRICES= must not mean the current folder)
    model_config = SettingsConfigDict(
        env_prefix="ADP_", extra="forbid", frozen=True, validate_default=True, env_ignore_empty=True
    )

    config: Path | None = Field(
        None,
        description=(
            "TOML file with any of these settings (keys as in this table); flag --config."
        ),
    )
    bootstrap: str = Field(
        "127.0.0.1:9092",
        description=(
            "Kafka bootstrap servers, host:port[,host:port]; `adp kafka up` listens there."
        ),
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description=("How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
    )
    sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description=("SASL mechanism for SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    )
    sasl_username: str | None = Field(None, description="SASL user name (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        None,
        description=(
            "SASL password; never printed or logged. Prefer the environment or a file only you "
            "can read."
        ),
    )
    ssl_cafile: Path | None = Field(
        None,
        description=("CA certificate(s) (PEM) to verify the brokers; default: the system's CAs."),
    )
    ssl_certfile: Path | None = Field(
        None, description=("Client certificate (PEM) for TLS client authentication (mutual TLS).")
    )
    ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of ssl_certfile.")
    ssl_check_hostname: bool = Field(
        True, description=("Check that a broker's certificate names the host connected to.")
    )
    client_id: str | None = Field(
        None,
        description=(
            "Client id of every Kafka client (broker logs, quotas); default: adp-<component>."
        ),
    )
    max_message_bytes: int = Field(
        32 * MiB,
        gt=0,
        description=(
            "Largest record the platform produces or fetches (a trajectory carries every raw LLM "
            "exchange); topics are created with this max.message.bytes."
        ),
    )
    home: Path = Field(
        Path(".adp"),
        description=("Local state: Kafka data, pid files, logs, the aggregator's data."),
    )
    cache_dir: Path = Field(
        Path("~/.cache/adp"),
        description=("Downloads reused across checkouts and test runs (Kafka jars)."),
    )
    output_dir: Path = Field(
        Path("output/trajectories"), description=("Where the file sink writes trajectories.")
    )
    metrics_port: int = Field(
        8001,
        description=(
            "Port of /metrics and /health of the first long-running component on a host (the "
            "next free one after it for the others)."
        ),
    )
    prices: Path | None = Field(
        None,
        description=(
            "A JSON price table per provider/model (README, 'Tokens and cost'); unset: only the "
            "embedded model is priced (at 0)."
        ),
    )

    @field_validator("home", "cache_dir", "output_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "config", "prices")
    @classmethod
    def _expand(cls, path: Path | None) -> Path | None:
        return path.expanduser().resolve() if path is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"sasl_{n} (ADP_SASL_{n.upper()})"
                for n in ("username", "password")
                if getattr(self, f"sasl_{n}") is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs " + " and ".join(missing)
                )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFile(settings_cls)

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def describe(self) -> str:
        """Where and how this connects, for messages: never the password."""
        how = (
            ""
            if self.security_protocol == "PLAINTEXT"
            else f" ({self.security_protocol}"
            + (f" as {self.sasl_username}" if self.uses_sasl else "")
            + ")"
        )
        return f"{self.bootstrap}{how}"

    # ---- the per-component sections (core/sections.py), read when first asked for -------------

    def section(self, cls: type[S]) -> S:
        """A section from the environment over this settings' config file's table of it."""
        table = _config_tables(self.config).get(cls.name, {})
        try:
            return cls(**table)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, cls)) from None

    @cached_property
    def llm(self) -> LlmSettings:
        return self.section(LlmSettings)

    @cached_property
    def runtime(self) -> RuntimeSettings:
        return self.section(RuntimeSettings)

    @cached_property
    def browser(self) -> BrowserSettings:
        return self.section(BrowserSettings)

    @cached_property
    def sandbox(self) -> SandboxSettings:
        return self.section(SandboxSettings)

    @cached_property
    def s3(self) -> S3Settings:
        return self.section(S3Settings)

    @cached_property
    def site(self) -> SiteSettings:
        return self.section(SiteSettings)

    @cached_property
    def mcp(self) -> McpSettings:
        return self.section(McpSettings)


class _ConfigFile(PydanticBaseSettingsSource):
    """The TOML file named by the `config` setting (flag or ADP_CONFIG): lowest priority above
    the defaults. Unknown keys are errors (a typo must not silently fall back to a default);
    relative paths in it are relative to the file, so a config folder can move as a whole."""

    PATH_KEYS = (
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "home",
        "cache_dir",
        "output_dir",
        "prices",
    )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        path = Path(path).expanduser()
        data = _read_config(path)
        known = set(self.settings_cls.model_fields) - {"config"}
        unknown = sorted(set(data) - known - SECTION_NAMES)
        if unknown:
            raise SettingsError(
                f"config file {path}: unknown setting(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))}; tables: {', '.join(sorted(SECTION_NAMES))})"
            )
        for key in self.PATH_KEYS:
            if isinstance(data.get(key), str):
                data[key] = str(path.parent / Path(data[key]).expanduser())
        return {k: v for k, v in data.items() if k not in SECTION_NAMES}


SECTION_NAMES = {cls.name for cls in SECTIONS}
SECTION_PATH_KEYS = {("sandbox", "requirements"), ("site", "dir")}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def _config_tables(path: Path | None) -> dict[str, dict[str, Any]]:
    """The section tables of the config file (`[llm]`, `[browser]`, ...); relative paths in them
    are relative to the file, as in the root table."""
    if path is None:
        return {}
    data = _read_config(path)
    tables: dict[str, dict[str, Any]] = {}
    for name in SECTION_NAMES & set(data):
        table = data[name]
        if not isinstance(table, dict):
            raise SettingsError(f"config file {path}: `{name}` must be a table ([{name}])")
        tables[name] = dict(table)
    for name, key in SECTION_PATH_KEYS:
        if isinstance(tables.get(name, {}).get(key), str):
            tables[name][key] = str(path.parent / Path(tables[name][key]).expanduser())
    _mcp_paths(tables.get("mcp", {}), path.parent)
    return tables


def _mcp_paths(table: dict[str, Any], folder: Path) -> None:
    """A stdio server's `cwd` is relative to the config file, as every path in it; a relative
    `command` or argument is left alone (it may name a program on PATH)."""
    servers = table.get("servers")
    if not isinstance(servers, dict):
        return
    for server in servers.values():
        if isinstance(server, dict) and isinstance(server.get("cwd"), str):
            server["cwd"] = str(folder / Path(server["cwd"]).expanduser())


def flag(value: Any) -> bool:
    """A yes/no given as text (an option that is either a flag or a path, like ADP_LLM_CACHE):
    1, true, yes, on. Settings fields typed bool are parsed by pydantic the same way."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def settings(**overrides: Any) -> Settings:
    """The settings now: `overrides` (flags; None means "not given") over the environment over
    the config file over defaults. Raises SettingsError naming the bad setting."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _explain(exc: ValidationError, section: type[Section] | None = None) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if name and section is not None and name in section.model_fields:
            where = " or ".join(section.env_names(name))
            parts.append(f"{section.name}.{name} ({where}): {msg}")
        elif name:
            parts.append(f"{name} (ADP_{name.upper()}): {msg}")
        else:
            parts.append(msg)
    return "invalid settings: " + "; ".join(parts)


def settings_table() -> str:
    """README's table of settings, from the class: name, environment variable, default,
    meaning (tests/test_settings.py keeps README equal to it)."""
    rows = ["| setting (config file key) | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            shown = "-"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{name}` | `ADP_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


def sections_table() -> str:
    """The table of every section's settings: `section.name`, its environment variable(s),
    default, meaning."""
    rows = [
        "| setting (config file `[section]` key) | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for cls in SECTIONS:
        for name, field in cls.model_fields.items():
            default = field.default
            shown = (
                "-"
                if default is None
                else (f"`{str(default).lower()}`" if isinstance(default, bool) else f"`{default}`")
            )
            where = " or ".join(f"`{n}`" for n in cls.env_names(name))
            rows.append(f"| `{cls.name}.{name}` | {where} | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":  # README's table: python -m adp.core.settings
    print(settings_table())
    print()
    print(sections_table())
