"""The LLM provider chain: which OpenAI-compatible endpoints to use, in which order.

Order (the seed's, extended): ADP_LLM_BASE_URL (+ADP_LLM_MODEL, ADP_LLM_API_KEY) as "custom";
then each hosted provider whose key is set: GEMINI_API_KEY, DEEPSEEK_API_KEY, OPENAI_API_KEY;
then ADP_VLLM_URL (+ADP_VLLM_MODEL) as "vllm"; then the embedded default ("local": SmolLM2 on
http://127.0.0.1:8088/v1, `adp llm up`; ADP_LLM_PORT moves it). ADP_LLM_PROVIDER=<name> keeps
only that one.

API keys are held in `Secret`, whose str/repr is '***': a Provider's repr names only the
environment variable a key came from, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

LOCAL_MODEL = "smollm2-135m-instruct"
LOCAL_PORT = 8088
NO_KEY = "sk-no-key-required"  # sent to endpoints that need none (the SDK wants a value)


class Secret:
    """A credential that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Provider:
    """One OpenAI-compatible endpoint. `api_key_env` names where the key came from."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key: Secret | None = field(default=None, repr=False, compare=False)

    def key(self) -> str:
        return self.api_key.reveal() if self.api_key is not None else NO_KEY

    def describe(self) -> str:
        return f"{self.name} ({self.model} at {self.base_url})"


def local_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return f"http://127.0.0.1:{int(env.get('ADP_LLM_PORT') or LOCAL_PORT)}/v1"


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name)
    return Secret(value) if value else None


# name, key variable, url variable, default url, model variable, default model
HOSTED = (
    (
        "gemini",
        "GEMINI_API_KEY",
        "GEMINI_API_URL",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "GEMINI_MODEL",
        "gemini-2.0-flash",
    ),
    (
        "deepseek",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_API_URL",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_MODEL",
        "deepseek-chat",
    ),
    (
        "openai",
        "OPENAI_API_KEY",
        "OPENAI_API_BASE",
        "https://api.openai.com/v1",
        "OPENAI_MODEL",
        "gpt-4o-mini",
    ),
)


def resolve_providers(env: Mapping[str, str] | None = None) -> list[Provider]:
    """The chain, first choice first. Raises ValueError if ADP_LLM_PROVIDER names none of it."""
    env = os.environ if env is None else env
    chain: list[Provider] = []
    if env.get("ADP_LLM_BASE_URL"):
        key = _secret(env, "ADP_LLM_API_KEY")
        chain.append(
            Provider(
                "custom",
                env["ADP_LLM_BASE_URL"],
                env.get("ADP_LLM_MODEL") or LOCAL_MODEL,
                "ADP_LLM_API_KEY" if key else None,
                key,
            )
        )
    for name, key_var, url_var, url, model_var, model in HOSTED:
        key = _secret(env, key_var)
        if key is not None:
            chain.append(
                Provider(name, env.get(url_var) or url, env.get(model_var) or model, key_var, key)
            )
    if env.get("ADP_VLLM_URL"):
        chain.append(
            Provider(
                "vllm",
                env["ADP_VLLM_URL"],
                env.get("ADP_VLLM_MODEL") or env.get("ADP_LLM_MODEL") or LOCAL_MODEL,
            )
        )
    chain.append(Provider("local", local_url(env), LOCAL_MODEL))
    forced = env.get("ADP_LLM_PROVIDER")
    if forced:
        chosen = [p for p in chain if p.name == forced]
        if not chosen:
            known = ", ".join(["custom", *(h[0] for h in HOSTED), "vllm", "local"])
            hint = {h[0]: f" (set {h[1]})" for h in HOSTED}.get(forced, "")
            hint = hint or {"custom": " (set ADP_LLM_BASE_URL)", "vllm": " (set ADP_VLLM_URL)"}.get(
                forced, ""
            )
            raise ValueError(
                f"ADP_LLM_PROVIDER={forced!r} is not configured{hint}; known providers: {known}"
            )
        chain = chosen
    return chain
