"""The scripted OpenAI-compatible stub, exercised through the real openai SDK over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from adp.runtimes.llm.stub import StubServer, load_script

PYTHON_TOOL = {"type": "function", "function": {"name": "python", "parameters": {"type": "object"}}}
READ_TOOL = {
    "type": "function",
    "function": {"name": "read_page", "parameters": {"type": "object"}},
}
CLICK_TOOL = {"type": "function", "function": {"name": "click", "parameters": {"type": "object"}}}
FINISH_TOOL = {"type": "function", "function": {"name": "finish", "parameters": {"type": "object"}}}


@pytest.fixture
async def stub():
    server = StubServer()
    await server.start()
    yield server
    await server.stop()


def sdk(url: str, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="sk-stub", max_retries=0, **kw)


async def ask(client, messages, **kw):
    return await client.chat.completions.create(model="m", messages=messages, **kw)


async def test_text_protocol_two_steps(stub):
    client = sdk(stub.base_url)
    task = "Compute the sum of the first ten primes and print it out please"
    first = await ask(
        client, [{"role": "system", "content": "be brief"}, {"role": "user", "content": task}]
    )
    raw = first.model_dump()
    assert raw["object"] == "chat.completion" and raw["id"].startswith("chatcmpl-")
    assert isinstance(raw["created"], int) and raw["model"] == "m"
    choice = first.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and not choice.message.tool_calls
    assert f"```python\nprint({task[:40]!r})\n```" in choice.message.content
    # deterministic whitespace word counts
    assert first.usage.prompt_tokens == 2 + len(task.split())
    assert first.usage.completion_tokens == len(choice.message.content.split())
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    conversation = [
        {"role": "user", "content": task},
        {"role": "assistant", "content": choice.message.content},
        {"role": "user", "content": "Observation:  129\n"},
    ]
    second = await ask(client, conversation)
    assert second.choices[0].message.content == "FINAL ANSWER: 129"
    again = await ask(client, conversation)  # same conversation, same reply
    assert again.choices[0].message.content == "FINAL ANSWER: 129"
    await client.close()


async def test_tools_two_steps(stub):
    client = sdk(stub.base_url)
    task = [{"role": "user", "content": "What is on the page?"}]
    first = await ask(client, task, tools=[READ_TOOL, PYTHON_TOOL, FINISH_TOOL])
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in msg.tool_calls] == ["python"]
    assert json.loads(msg.tool_calls[0].function.arguments) == {
        "code": "print('What is on the page?')"
    }
    call = msg.tool_calls[0]
    convo = [
        *task,
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "  " + "x" * 300 + "\n"},
    ]
    second = await ask(client, convo, tools=[PYTHON_TOOL, FINISH_TOOL])
    done = second.choices[0].message.tool_calls[0]
    assert done.function.name == "finish"
    assert json.loads(done.function.arguments) == {"answer": "x" * 200}

    # no python: read_page; neither: first tool; no finish: plain FINAL ANSWER
    read = await ask(client, task, tools=[CLICK_TOOL, READ_TOOL])
    assert read.choices[0].message.tool_calls[0].function.name == "read_page"
    assert json.loads(read.choices[0].message.tool_calls[0].function.arguments) == {}
    other = await ask(client, task, tools=[CLICK_TOOL])
    assert other.choices[0].message.tool_calls[0].function.name == "click"
    plain = await ask(client, convo, tools=[PYTHON_TOOL])
    assert plain.choices[0].message.content == "FINAL ANSWER: " + "x" * 200
    assert not plain.choices[0].message.tool_calls
    await client.close()


async def test_scripted_rules_in_order_and_last_reply_repeats():
    script = [
        {
            "match": "^weather",
            "replies": [
                {
                    "content": "looking",
                    "tool_calls": [{"name": "search", "arguments": {"q": "rain"}}],
                },
                "FINAL ANSWER: rain",
            ],
        },
        {"match": "weather", "replies": ["never reached for ^weather"]},
        {"replies": ["catch-all"]},
    ]
    async with StubServer(script=json.dumps(script)) as server:
        client = sdk(server.base_url)
        user = {"role": "user", "content": "weather in Paris"}
        r0 = await ask(client, [user])
        assert r0.choices[0].message.content == "looking"
        assert r0.choices[0].message.tool_calls[0].function.name == "search"
        assert json.loads(r0.choices[0].message.tool_calls[0].function.arguments) == {"q": "rain"}
        a = {"role": "assistant", "content": "x"}
        r1 = await ask(client, [user, a, {"role": "user", "content": "more"}])
        r3 = await ask(client, [user, a, a, a])
        assert (
            r1.choices[0].message.content == r3.choices[0].message.content == "FINAL ANSWER: rain"
        )
        mid = await ask(client, [{"role": "user", "content": "the weather"}])
        assert mid.choices[0].message.content == "never reached for ^weather"
        rest = await ask(client, [{"role": "user", "content": "anything"}])
        assert rest.choices[0].message.content == "catch-all"
        await client.close()


async def test_faults_status_then_fall_through():
    script = [
        {
            "match": "limited",
            "replies": [{"status": 429, "times": 1}, {"status": 503, "times": 1}, "ok"],
        },
        {"match": "broken", "replies": [{"status": 500}]},
    ]
    async with StubServer(script=script) as server:
        client = sdk(server.base_url)
        msgs = [{"role": "user", "content": "limited"}]
        with pytest.raises(openai.RateLimitError):
            await ask(client, msgs)
        with pytest.raises(openai.InternalServerError) as info:
            await ask(client, msgs)
        assert info.value.status_code == 503
        assert (await ask(client, msgs)).choices[0].message.content == "ok"
        assert (await ask(client, msgs)).choices[0].message.content == "ok"
        for _ in range(3):  # no "times": fails every time
            with pytest.raises(openai.InternalServerError):
                await ask(client, [{"role": "user", "content": "broken"}])
        assert server.stats["chat_requests"] == 7 and server.stats["faults"] == 5
        await client.close()


async def test_malformed_and_hang():
    script = [
        {"match": "garbled", "replies": [[{"malformed": True, "times": 1}, "fine"]]},
        {"match": "slow", "replies": [{"hang": 60}]},
    ]
    async with StubServer(script=script) as server:
        client = sdk(server.base_url)
        with pytest.raises(ValueError):  # the SDK cannot decode the body
            await ask(client, [{"role": "user", "content": "garbled"}])
        assert (await ask(client, [{"role": "user", "content": "garbled"}])).choices[
            0
        ].message.content == "fine"
        with pytest.raises(openai.APITimeoutError):
            await ask(client, [{"role": "user", "content": "slow"}], timeout=0.3)
        await client.close()


async def test_streaming_models_health_stats(stub):
    client = sdk(stub.base_url)
    chunks = [
        c
        async for c in await ask(
            client,
            [{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Thought:") and "print('hi there')" in text
    assert chunks[-1].usage.prompt_tokens == 2
    tool_chunks = [
        c
        async for c in await ask(
            client, [{"role": "user", "content": "hi"}], stream=True, tools=[PYTHON_TOOL]
        )
    ]
    calls = [tc for c in tool_chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "python"
    models = await client.models.list()
    assert [m.id for m in models.data] == ["stub-model"]
    http = client._client  # the SDK's own HTTP client, for the non-OpenAI endpoints
    root = stub.base_url.rsplit("/v1", 1)[0]
    assert (await http.get(root + "/health")).json()["status"] == "ok"
    assert (await http.get(root + "/stats")).json()["chat_requests"] == 2
    await http.post(root + "/stats/reset")
    assert (await http.get(root + "/stats")).json() == {}
    await client.close()


def test_in_thread_with_sync_client():
    with StubServer(script=[{"match": "x", "replies": ["sync ok"]}]).in_thread() as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.choices[0].message.content == "sync ok"
        client.close()


def test_script_format_errors(tmp_path):
    with pytest.raises(ValueError):
        load_script([{"match": "a", "replies": "not a list"}])
    with pytest.raises(ValueError):
        load_script([{"replies": [42]}])
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"rules": [{"replies": [{"status": 500, "times": 1}, "b"]}]}))
    (rule,) = load_script(path)
    assert len(rule.slots) == 1 and rule.slots[0].reply == "b" and rule.slots[0].faults


def test_cli_serves_a_script(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "ping", "replies": ["pong"]}]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adp",
            "llm-stub",
            "--port",
            "0",
            "--latency",
            "0.01",
            "--script",
            str(script),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split()[-1]
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "ping"}]
        )
        assert reply.choices[0].message.content == "pong"
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
