"""LLMClient against real stub servers over HTTP: exchange capture, retries, fallback, AIMD,
timeouts, cache, and API-key hygiene."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adp.core.errors import DependencyOutage
from adp.core.limit import AdaptiveLimit
from adp.runtimes.llm.cache import LLMCache, fingerprint
from adp.runtimes.llm.client import LLMClient, LLMError, LlmUnavailable, RetryPolicy, build_model
from adp.runtimes.llm.providers import Provider, Secret, resolve_providers
from adp.runtimes.llm.stub import StubServer

FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)
PYTHON_TOOL = {"type": "function", "function": {"name": "python", "parameters": {"type": "object"}}}
FINISH_TOOL = {"type": "function", "function": {"name": "finish", "parameters": {"type": "object"}}}


def client_for(*servers: StubServer, **kw) -> LLMClient:
    providers = [Provider(f"p{i}", s.base_url, "stub-model") for i, s in enumerate(servers)]
    kw.setdefault("retry", FAST)
    return LLMClient(providers, **kw)


@pytest.fixture
async def stub():
    async with StubServer() as server:
        yield server


async def test_exchange_capture_and_two_step_tool_loop(stub):
    client = client_for(stub, temperature=0.3, max_tokens=77)
    assert callable(getattr(client, "chat", None))  # runtimes.base.Model
    messages = [
        {"role": "system", "content": "agent"},
        {"role": "user", "content": "List files now"},
    ]
    reply = await client.chat(messages, tools=[PYTHON_TOOL, FINISH_TOOL])
    ex = reply.exchange
    assert ex.provider == "p0" and ex.model == "stub-model" and ex.cached is False
    assert ex.request["messages"] == messages and ex.request["tools"] == [PYTHON_TOOL, FINISH_TOOL]
    assert ex.request["temperature"] == 0.3 and ex.request["max_tokens"] == 77
    assert (
        ex.response["object"] == "chat.completion"
        and ex.response["choices"][0]["message"]["tool_calls"]
    )
    assert (
        ex.prompt_tokens == 4
        and ex.completion_tokens == ex.response["usage"]["completion_tokens"] > 0
    )
    assert ex.latency > 0
    (call,) = reply.tool_calls
    assert (
        call.name == "python" and call.arguments == {"code": "print('List files now')"} and call.id
    )
    assert reply.message["role"] == "assistant" and reply.message["tool_calls"][0]["id"] == call.id

    messages.append(reply.message)  # the request snapshot must not change with the conversation
    assert len(ex.request["messages"]) == 2
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "a.txt b.txt\n"})
    final = await client.chat(messages, tools=[PYTHON_TOOL, FINISH_TOOL])
    assert final.tool_calls[0].name == "finish" and final.tool_calls[0].arguments == {
        "answer": "a.txt b.txt"
    }
    text = await client.chat([{"role": "user", "content": "hi"}])
    assert (
        "```python" in text.content
        and text.tool_calls == []
        and text.message["content"] == text.content
    )
    await client.aclose()


async def test_unparseable_tool_arguments_are_kept_raw():
    script = [
        {
            "replies": [
                {"content": None, "tool_calls": [{"name": "python", "arguments": "{not json"}]}
            ]
        }
    ]
    async with StubServer(script=script) as server:
        client = client_for(server)
        reply = await client.chat([{"role": "user", "content": "x"}], tools=[PYTHON_TOOL])
        assert reply.tool_calls[0].arguments == {"_raw": "{not json"}
        assert reply.message["tool_calls"][0]["function"]["arguments"] == "{not json"
        await client.aclose()


async def test_retries_then_success():
    async with StubServer(
        script=[{"replies": [[{"status": 500, "times": 2}, "third time lucky"]]}]
    ) as server:
        client = client_for(server)
        reply = await client.chat([{"role": "user", "content": "x"}])
        assert reply.content == "third time lucky"
        assert server.stats["chat_requests"] == 3 and server.stats["faults"] == 2
        await client.aclose()


async def test_fallback_to_next_provider_when_first_keeps_failing(stub):
    async with StubServer(script=[{"replies": [{"status": 503}]}]) as broken:
        client = client_for(broken, stub)
        reply = await client.chat([{"role": "user", "content": "x"}])
        assert reply.exchange.provider == "p1" and "```python" in reply.content
        assert broken.stats["chat_requests"] == FAST.attempts
        # the exhausted provider now goes last: the next call does not pay for it again
        await client.chat([{"role": "user", "content": "y"}])
        assert broken.stats["chat_requests"] == FAST.attempts
        await client.aclose()


async def test_a_request_every_provider_rejects_raises_llm_error():
    async with (
        StubServer(script=[{"replies": [{"status": 500}]}]) as a,
        StubServer(script=[{"replies": [{"status": 400}]}]) as b,
    ):
        client = client_for(a, b)
        with pytest.raises(LLMError, match="all LLM providers failed") as info:
            await client.chat([{"role": "user", "content": "x"}])
        # one provider said the request itself is wrong: the agent's failure, not an outage
        assert not isinstance(info.value, LlmUnavailable)
        assert "p0: HTTP 500: stub fault 500 (3 tries); p1: HTTP 400: stub fault 400" in str(
            info.value
        )
        assert b.stats["chat_requests"] == 1  # a 400 is not retried
        await client.aclose()


async def test_every_provider_down_or_refusing_is_an_outage_with_a_probe():
    async with (
        StubServer(script=[{"replies": [{"status": 503}]}]) as a,
        StubServer(script=[{"replies": [{"status": 401}]}]) as b,
    ):
        client = client_for(a, b)
        with pytest.raises(LlmUnavailable, match="LLM endpoint unavailable") as info:
            await client.chat([{"role": "user", "content": "x"}])
        outage = info.value
        assert isinstance(outage, DependencyOutage) and outage.dependency == "llm"
        assert b.stats["chat_requests"] == 1  # a 401 is not retried, but it is an outage
        # both stubs answer GET /models: the probe names the first that does
        assert await outage.probe() == "p0"
        await client.aclose()


async def test_429_lowers_the_limit_and_successes_raise_it():
    limit = AdaptiveLimit(initial=8, maximum=10)
    script = [{"match": "throttle", "replies": [[{"status": 429, "times": 1}, "ok"]]}]
    async with StubServer(script=script) as server:
        client = client_for(server, limit=limit)
        assert (await client.chat([{"role": "user", "content": "throttle"}])).content == "ok"
        assert limit.current == 4
        for _ in range(40):
            await client.chat([{"role": "user", "content": "fine"}])
        assert 4 < limit.current <= 10
        await client.aclose()


async def test_adaptive_limit_bounds_and_gating():
    limit = AdaptiveLimit(initial=2, maximum=3)
    for _ in range(50):
        limit.on_overload()
    assert limit.current == 1
    for _ in range(100):
        limit.on_success()
    assert limit.current == 3
    for _ in range(50):
        limit.on_overload()
    await limit.acquire()  # limit 1: a second acquire must wait for a release
    waiter = asyncio.create_task(limit.acquire())
    for _ in range(5):
        await asyncio.sleep(0)  # let the loop run; no timing involved
    assert not waiter.done()
    limit.release()
    await waiter
    assert limit.in_flight == 1
    limit.release()
    async with limit:
        assert limit.in_flight == 1
    assert limit.in_flight == 0


async def test_adaptive_limit_under_concurrency_and_cancellation():
    limit = AdaptiveLimit(initial=2, maximum=2)
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with limit:
            peak = max(peak, limit.in_flight)
            for _ in range(3):
                await asyncio.sleep(0)

    await asyncio.gather(*(work() for _ in range(20)))
    assert peak == 2 and limit.in_flight == 0

    await limit.acquire()
    await limit.acquire()
    doomed = asyncio.create_task(limit.acquire())
    survivor = asyncio.create_task(limit.acquire())
    for _ in range(3):
        await asyncio.sleep(0)
    limit.release()  # hands the slot to `doomed`, which is cancelled before it runs
    doomed.cancel()
    await survivor  # the slot was passed on, nothing stalls
    assert doomed.cancelled() and limit.in_flight == 2


async def test_hang_times_out_then_falls_over(stub):
    async with StubServer(script=[{"replies": [{"hang": 120}]}]) as hanging:
        client = client_for(hanging, stub, timeout=0.5, retry=RetryPolicy(1, 0.001, 0.001))
        reply = await client.chat([{"role": "user", "content": "x"}])
        assert reply.exchange.provider == "p1"
        assert hanging.stats["chat_requests"] == 1
        await client.aclose()


async def test_cache_hit_is_marked_and_sends_nothing(stub, tmp_path):
    path = tmp_path / "llm-cache.sqlite3"
    client = client_for(stub, cache=LLMCache(path))
    messages = [{"role": "user", "content": "cache me"}]
    first = await client.chat(messages, tools=[PYTHON_TOOL])
    assert first.exchange.cached is False and stub.stats["chat_requests"] == 1
    second = await client.chat(messages, tools=[PYTHON_TOOL])
    assert second.exchange.cached is True and stub.stats["chat_requests"] == 1
    assert second.exchange.response == first.exchange.response
    assert second.tool_calls == first.tool_calls and second.message == first.message
    await client.chat(messages)  # different tools: a different fingerprint
    assert stub.stats["chat_requests"] == 2
    await client.aclose()
    other = client_for(stub, cache=LLMCache(path), temperature=0.0)  # another instance, same file
    assert (await other.chat(messages, tools=[PYTHON_TOOL])).exchange.cached is True
    assert other.cache.hits == 1 and stub.stats["chat_requests"] == 2
    await other.aclose()
    assert fingerprint("a", "m", [], None, {}) != fingerprint("b", "m", [], None, {})


async def test_api_key_never_leaks(caplog, tmp_path):
    secret = "sk-test-SECRET123"
    for name in ("", "openai", "httpx", "httpx2", "runtimes"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    async with (
        StubServer(script=[{"replies": [[{"status": 500, "times": 1}, {"status": 401}]]}]) as bad,
        StubServer() as good,
    ):
        env = {
            "ADP_LLM_BASE_URL": bad.base_url,
            "ADP_LLM_API_KEY": secret,
            "ADP_LLM_MODEL": "m",
            "OPENAI_API_KEY": secret,
            "OPENAI_API_BASE": good.base_url,
        }
        providers = resolve_providers(env)
        assert [p.name for p in providers] == ["custom", "openai"]
        client = LLMClient(providers, retry=FAST, cache=LLMCache(tmp_path / "c.sqlite3"))
        reply = await client.chat([{"role": "user", "content": "x"}])
        assert reply.exchange.provider == "openai"
        assert bad.last_auth == good.last_auth == f"Bearer {secret}"  # it was really sent
        failing = LLMClient(providers[:1], retry=RetryPolicy(1, 0.001, 0.001))
        with pytest.raises(LLMError) as info:
            await failing.chat([{"role": "user", "content": "x"}])  # the 401 now
        texts = [
            caplog.text,
            repr(providers),
            str(providers[0]),
            repr(client),
            repr(failing),
            reply.exchange.model_dump_json(),
            repr(reply),
            str(info.value),
            repr(info.value),
            repr(providers[0].api_key),
        ]
        assert caplog.records  # the retries were logged
        for text in texts:
            assert "SECRET123" not in text
        assert "ADP_LLM_API_KEY" in repr(providers[0])
        await client.aclose()
        await failing.aclose()


def test_provider_chain_order_and_overrides():
    assert [(p.name, p.base_url, p.model) for p in resolve_providers({})] == [
        ("local", "http://127.0.0.1:8088/v1", "smollm2-135m-instruct")
    ]
    env = {
        "OPENAI_API_KEY": "o",
        "DEEPSEEK_API_KEY": "d",
        "GEMINI_API_KEY": "g",
        "ADP_VLLM_URL": "http://vllm:8000/v1",
        "ADP_VLLM_MODEL": "qwen",
        "ADP_LLM_PORT": "9000",
        "GEMINI_MODEL": "gemini-x",
        "DEEPSEEK_API_URL": "http://ds/v1",
    }
    chain = resolve_providers(env)
    # only what is configured: the embedded model is never a silent fallback
    assert [p.name for p in chain] == ["gemini", "deepseek", "openai", "vllm"]
    assert chain[0].model == "gemini-x" and chain[0].base_url.startswith(
        "https://generativelanguage"
    )
    assert chain[1].base_url == "http://ds/v1" and chain[2].model == "gpt-4o-mini"
    assert chain[3].model == "qwen"
    local = resolve_providers({**env, "ADP_LLM_PROVIDER": "local"})
    assert [(p.name, p.base_url) for p in local] == [("local", "http://127.0.0.1:9000/v1")]
    assert chain[0].key() == "g" and chain[3].api_key is None
    assert [p.name for p in resolve_providers({**env, "ADP_LLM_PROVIDER": "openai"})] == ["openai"]
    with pytest.raises(ValueError, match="DEEPSEEK_API_KEY"):
        resolve_providers({"ADP_LLM_PROVIDER": "deepseek"})
    assert repr(Secret("abc")) == str(Secret("abc")) == "Secret('***')"


async def test_build_model_from_env(stub, monkeypatch, tmp_path):
    monkeypatch.setenv("ADP_LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("ADP_LLM_PROVIDER", "custom")
    monkeypatch.setenv("ADP_HOME", str(tmp_path))
    model = build_model({"max_tokens": 64, "attempts": 2, "cache": True})
    assert model.params["max_tokens"] == 64 and model.retry.attempts == 2
    assert model.cache is not None and model.cache.path == tmp_path / "llm-cache.sqlite3"
    reply = await model.chat([{"role": "user", "content": "hello"}])
    assert reply.exchange.provider == "custom" and "```python" in reply.content
    await model.aclose()


async def test_a_samples_parameters_reach_the_request_and_the_cache_keeps_samples_apart(
    stub, tmp_path
):
    from adp.runtimes.base import sampling

    client = client_for(stub, cache=LLMCache(tmp_path / "c.sqlite3"), temperature=0.0)
    messages = [{"role": "user", "content": "sample me"}]
    plain = await client.chat(messages)
    assert plain.exchange.request["temperature"] == 0.0 and "seed" not in plain.exchange.request
    with sampling(1, temperature=0.9, seed=12):
        first = await client.chat(messages)
    with sampling(2, temperature=0.9, seed=13):
        second = await client.chat(messages)
    with sampling(2, temperature=0.9, seed=13):
        again = await client.chat(messages)  # the same sample asking again: a cache hit
    assert first.exchange.request["temperature"] == 0.9 and first.exchange.request["seed"] == 12
    assert second.exchange.request["seed"] == 13
    assert [r.exchange.cached for r in (plain, first, second, again)] == [False, False, False, True]
    assert stub.stats["chat_requests"] == 3
    assert (await client.chat(messages)).exchange.cached is True  # outside: the client's own
    await client.aclose()
