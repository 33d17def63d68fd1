"""Token-exact LLM calls: which endpoints are asked for token ids and logprobs, and reading them
out of a chat completion's JSON body into the call's LlmExchange.

A trainer that re-tokenizes the text of a conversation gets other tokens than the model sampled
(a chat template applied again, a tokenizer that merges differently), so the exchange keeps
what the endpoint says it used: `prompt_token_ids` (the whole prompt of that call, after the
chat template), `completion_token_ids` (what it sampled) and `completion_logprobs` (the sampled
tokens' logprobs), plus `model_revision`. Nothing is invented: an endpoint that returns no ids
leaves the fields empty.

What each endpoint is asked (the llm.tokens setting, ADP_LLM_TOKENS):
- vLLM's OpenAI server (provider `vllm`; `custom` under `on`): `"logprobs": true` (OpenAI's
  own parameter) and `"return_token_ids": true` (vLLM's extra parameter of chat completions:
  the body then carries `prompt_token_ids` and `choices[0].token_ids`). The stub
  (`adp llm-stub`) answers the same two, with a toy tokenizer of its own.
- llama-cpp-python's server (provider `local`, `adp llm up`): `"logprobs": true` with
  `"top_logprobs": 1` (its chat handler computes logprobs only when top_logprobs is given);
  it returns no token ids, so its calls carry logprobs alone.
- hosted providers (gemini, deepseek, openai): never; they return no token ids, and unknown
  parameters are refused.
Whatever the mode but `off`, ids a body carries unasked are recorded too (they are the
endpoint's own).
"""

from __future__ import annotations

import logging
from typing import Any

from adp.core.settings import settings
from adp.schemas.contracts import LlmExchange

log = logging.getLogger(__name__)

VLLM_PARAMS: dict[str, Any] = {"logprobs": True, "return_token_ids": True}
LLAMA_CPP_PARAMS: dict[str, Any] = {"logprobs": True, "top_logprobs": 1}
HOSTED = ("gemini", "deepseek", "openai")


class TokenCapture:
    """The token options of one LLM client: `params(provider)` for a request's body,
    `record(exchange, raw)` after the reply."""

    def __init__(self, mode: str = "auto", revision: str | None = None) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"token capture must be auto, on or off, not {mode!r}")
        self.mode, self.revision = mode, revision
        self._malformed_said = False

    @classmethod
    def from_settings(cls) -> TokenCapture:
        llm = settings().llm
        return cls(llm.tokens, llm.model_revision)

    def params(self, provider_name: str) -> dict[str, Any]:
        """The extra body fields that ask `provider_name` for token ids and logprobs."""
        if self.mode == "off" or provider_name in HOSTED:
            return {}
        if provider_name == "local":
            return LLAMA_CPP_PARAMS
        if provider_name == "vllm" or self.mode == "on":
            return VLLM_PARAMS
        return {}

    def record(self, exchange: LlmExchange, raw: dict[str, Any]) -> None:
        """Fill the exchange's token fields from the body the endpoint returned."""
        exchange.model_revision = self.revision or _text(raw.get("system_fingerprint"))
        if self.mode == "off":
            return
        choice = _first_choice(raw)
        prompt = _ids(raw.get("prompt_token_ids", choice.get("prompt_token_ids")))
        completion = _ids(choice.get("token_ids"))
        logprobs = _logprobs(choice.get("logprobs"))
        if prompt is None or completion is None or logprobs is None:
            if not self._malformed_said:
                self._malformed_said = True
                log.warning(
                    "%s returned token ids or logprobs that are not lists of numbers; "
                    "its calls carry none",
                    exchange.provider,
                )
            return
        exchange.prompt_token_ids = prompt
        exchange.completion_token_ids = completion
        exchange.completion_logprobs = logprobs


def _first_choice(raw: dict[str, Any]) -> dict[str, Any]:
    choices = raw.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _ids(value: Any) -> list[int] | None:
    """A list of token ids ([] when absent); None when it is there but not ids."""
    if value is None:
        return []
    if isinstance(value, list) and all(type(v) is int for v in value):
        return value
    return None


def _logprobs(value: Any) -> list[float] | None:
    """The sampled tokens' logprobs of OpenAI's `logprobs.content` ([] when absent); None
    when it is there but malformed."""
    if not isinstance(value, dict) or value.get("content") is None:
        return []
    content = value["content"]
    if not isinstance(content, list):
        return None
    out = []
    for entry in content:
        lp = entry.get("logprob") if isinstance(entry, dict) else None
        if isinstance(lp, bool) or not isinstance(lp, int | float):
            return None
        out.append(float(lp))
    return out
