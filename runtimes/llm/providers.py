"""The LLM provider chain: which OpenAI-compatible endpoints to use, in which order.

Order (the seed's, extended): ADP_LLM_BASE_URL (+ADP_LLM_MODEL, ADP_LLM_API_KEY) as "custom";
then each hosted provider whose key is set: GEMINI_API_KEY, DEEPSEEK_API_KEY, OPENAI_API_KEY;
then ADP_VLLM_URL (+ADP_VLLM_MODEL) as "vllm". The chain is only what the user configured: the
client fails over among these and no other. The embedded model ("local": SmolLM2 on
http://127.0.0.1:8088/v1, `adp llm up`; ADP_LLM_PORT moves it) is the chain only when nothing
else is configured (or ADP_LLM_PROVIDER=local asks for it); it is never appended as a fallback,
so a run's trajectories never mix the user's model with the tiny demo model.
ADP_LLM_PROVIDER=<name> keeps only that one.

API keys are held in `Secret`, whose str/repr is '***': a Provider's repr names only the
environment variable a key came from, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from adp.core.errors import BadInput
from adp.core.sections import LlmSettings
from adp.core.settings import settings

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


def local_url(llm: LlmSettings | None = None) -> str:
    llm = llm or settings().llm
    return f"http://127.0.0.1:{llm.port}/v1"


def _secret(value: SecretStr | None) -> Secret | None:
    return Secret(value.get_secret_value()) if value is not None else None


# the hosted providers the seed names, in its order: name, and the settings fields (and
# environment variables) of their key, endpoint and model
HOSTED = (
    ("gemini", "GEMINI_API_KEY", "gemini_api_key", "gemini_api_url", "gemini_model"),
    ("deepseek", "DEEPSEEK_API_KEY", "deepseek_api_key", "deepseek_api_url", "deepseek_model"),
    ("openai", "OPENAI_API_KEY", "openai_api_key", "openai_api_base", "openai_model"),
)


def resolve_providers(env: LlmSettings | Mapping[str, str] | None = None) -> list[Provider]:
    """The chain, first choice first, from the LLM settings (a mapping: as a process with that
    environment would read them). Raises BadInput if ADP_LLM_PROVIDER names none of it."""
    llm = (
        env
        if isinstance(env, LlmSettings)
        else (settings().llm if env is None else LlmSettings.from_environ(env))
    )
    chain: list[Provider] = []
    if llm.base_url:
        key = _secret(llm.api_key)
        chain.append(
            Provider(
                "custom",
                llm.base_url,
                llm.model or LOCAL_MODEL,
                "ADP_LLM_API_KEY" if key else None,
                key,
            )
        )
    for name, key_var, key_field, url_field, model_field in HOSTED:
        key = _secret(getattr(llm, key_field))
        if key is not None:
            chain.append(
                Provider(name, getattr(llm, url_field), getattr(llm, model_field), key_var, key)
            )
    if llm.vllm_url:
        chain.append(Provider("vllm", llm.vllm_url, llm.vllm_model or llm.model or LOCAL_MODEL))
    local = Provider("local", local_url(llm), LOCAL_MODEL)
    if llm.provider == "local" or (not chain and not llm.provider):
        return [local]
    if llm.provider:
        chosen = [p for p in chain if p.name == llm.provider]
        if not chosen:
            known = ", ".join(["custom", *(h[0] for h in HOSTED), "vllm", "local"])
            hint = {h[0]: f" (set {h[1]})" for h in HOSTED}.get(llm.provider, "")
            hint = hint or {"custom": " (set ADP_LLM_BASE_URL)", "vllm": " (set ADP_VLLM_URL)"}.get(
                llm.provider, ""
            )
            raise BadInput(
                f"ADP_LLM_PROVIDER={llm.provider!r} is not configured{hint}; known providers: "
                f"{known}"
            )
        chain = chosen
    return chain
