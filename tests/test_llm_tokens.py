"""Token-exact LLM calls: what each endpoint is asked (runtimes/llm/tokens.py), how ids and
logprobs are read out of a body, and the stub answering vLLM's options over real HTTP with ids
that a test can recompute (runtimes/llm/stub_tokens.py)."""

from __future__ import annotations

import pytest

from adp.runtimes.llm import stub_tokens
from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import Provider
from adp.runtimes.llm.stub import StubServer
from adp.runtimes.llm.tokens import LLAMA_CPP_PARAMS, VLLM_PARAMS, TokenCapture
from adp.schemas.contracts import LlmExchange


def exchange() -> LlmExchange:
    return LlmExchange(provider="vllm", model="m", request={}, response={})


@pytest.mark.parametrize(
    ("mode", "provider", "asked"),
    [
        ("auto", "vllm", VLLM_PARAMS),
        ("auto", "local", LLAMA_CPP_PARAMS),
        ("auto", "custom", {}),
        ("auto", "openai", {}),
        ("on", "custom", VLLM_PARAMS),
        ("on", "gemini", {}),
        ("on", "deepseek", {}),
        ("off", "vllm", {}),
        ("off", "local", {}),
    ],
)
def test_each_endpoint_is_asked_only_what_it_can_answer(mode, provider, asked):
    assert TokenCapture(mode).params(provider) == asked


def test_vllm_shaped_body_fills_ids_logprobs_and_revision():
    raw = {
        "prompt_token_ids": [1, 2, 3],
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "message": {"content": "x"},
                "token_ids": [7, 8],
                "logprobs": {"content": [{"token": "a", "logprob": -0.5}, {"logprob": -1}]},
            }
        ],
    }
    ex = exchange()
    TokenCapture("auto").record(ex, raw)
    assert (ex.prompt_token_ids, ex.completion_token_ids) == ([1, 2, 3], [7, 8])
    assert ex.completion_logprobs == [-0.5, -1.0] and ex.model_revision == "fp_1"
    # a revision the settings name wins over the endpoint's fingerprint
    ex = exchange()
    TokenCapture("auto", revision="step-40").record(ex, raw)
    assert ex.model_revision == "step-40"


def test_llama_cpp_body_gives_logprobs_alone_and_nothing_is_invented():
    raw = {"choices": [{"message": {}, "logprobs": {"content": [{"logprob": -0.25}]}}]}
    ex = exchange()
    TokenCapture("auto").record(ex, raw)
    assert (ex.prompt_token_ids, ex.completion_token_ids) == ([], [])
    assert ex.completion_logprobs == [-0.25] and ex.model_revision is None


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_token_ids": ["a"], "choices": [{"token_ids": [1]}]},
        {"prompt_token_ids": [1], "choices": [{"token_ids": [1.5]}]},
        {"prompt_token_ids": [1], "choices": [{"token_ids": [1], "logprobs": {"content": 3}}]},
        {"choices": [{"token_ids": [True]}]},
    ],
)
def test_malformed_ids_are_not_recorded(raw):
    ex = exchange()
    TokenCapture("on").record(ex, raw)
    assert (ex.prompt_token_ids, ex.completion_token_ids, ex.completion_logprobs) == ([], [], [])


def test_off_records_no_ids_even_when_a_body_carries_them():
    ex = exchange()
    TokenCapture("off").record(ex, {"prompt_token_ids": [1], "choices": [{"token_ids": [2]}]})
    assert (ex.prompt_token_ids, ex.completion_token_ids) == ([], [])


def client(url: str, mode: str) -> LLMClient:
    c = LLMClient([Provider("custom", url, "stub")], retry=RetryPolicy(attempts=1), timeout=10)
    c.tokens = TokenCapture(mode)
    return c


async def test_the_stub_answers_vllm_token_options_with_recomputable_ids():
    async with StubServer() as stub:
        c = client(stub.base_url, "on")
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        first = await c.chat(messages)
        ex = first.exchange
        assert ex.prompt_token_ids == stub_tokens.prompt_ids(messages)
        assert ex.completion_token_ids == stub_tokens.completion_ids(first.message)
        assert ex.completion_logprobs == [
            stub_tokens.logprob(t, i) for i, t in enumerate(ex.completion_token_ids)
        ]
        assert all(-1 < lp < 0 for lp in ex.completion_logprobs)
        # the next call's prompt extends this call's prompt and completion, token for token
        messages += [first.message, {"role": "user", "content": "Observation: hi"}]
        second = (await c.chat(messages)).exchange
        n = len(ex.prompt_token_ids) + len(ex.completion_token_ids)
        assert second.prompt_token_ids[:n] == ex.prompt_token_ids + ex.completion_token_ids
        assert stub.stats["token_requests"] == 2
        # under auto, a custom endpoint is not asked (it may be a server that refuses them)
        c.tokens = TokenCapture("auto")
        assert (await c.chat(messages[:2])).exchange.prompt_token_ids == []
        assert stub.stats["token_requests"] == 2
        await c.aclose()


async def test_a_template_that_rewrites_history_breaks_the_prefix():
    async with StubServer(template="rewrite-history") as stub:
        c = client(stub.base_url, "on")
        messages = [{"role": "user", "content": "compute"}]
        first = await c.chat(messages)  # the unscripted reply 0 starts with "Thought:"
        assert first.message["content"].startswith("Thought:")
        messages += [first.message, {"role": "user", "content": "Observation: 1"}]
        second = (await c.chat(messages)).exchange
        ex = first.exchange
        n = len(ex.prompt_token_ids) + len(ex.completion_token_ids)
        assert second.prompt_token_ids[:n] != ex.prompt_token_ids + ex.completion_token_ids
        await c.aclose()


def test_the_stub_refuses_an_unknown_template():
    with pytest.raises(ValueError, match="chat template 'chatml'"):
        StubServer(template="chatml")
