"""MCP tools in the runtimes, against a real MCP server written with the official SDK
(tests/mcp_kv_server.py) over stdio and over streamable HTTP: what a call returns and records,
the crash, hang and never-starts cases, which tools a task is offered, and the agent loop's
steps with the real stub LLM process choosing the tools."""

from __future__ import annotations

import hashlib
import json
import logging
import sys

import pytest

from adp.core.errors import DependencyUnavailable
from adp.core.sections import McpServerSettings
from adp.runtimes.agent import Agent
from adp.runtimes.tools.mcp import McpToolbox
from adp.runtimes.tools.mcp.names import function_name
from tests.helpers import (
    KV_SERVER,
    call,
    client,
    free_port,
    mcp_http_process,
    reply,
    scripted_stub,
)

TOKEN = "kv-token-8c1f3e-never-shown"
PNG = b"\x89PNG\r\n\x1a\n"


def stdio_server(*args: str, **fields) -> McpServerSettings:
    # generous: the machine may be busy (the fault tests set their own timeouts)
    fields.setdefault("timeout", 60)
    fields.setdefault("startup_timeout", 120)
    return McpServerSettings(
        command=sys.executable, args=[KV_SERVER, *args], env={"KV_TOKEN": TOKEN}, **fields
    )


@pytest.fixture(scope="module")
def kv_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("kv-http") / "kv.log"
    port = free_port()
    with mcp_http_process([sys.executable, KV_SERVER, "--http", str(port)], log, port) as url:
        yield url


@pytest.fixture(params=["stdio", "http"])
async def kv(request, tmp_path, kv_url):
    conf = stdio_server() if request.param == "stdio" else McpServerSettings(url=kv_url, timeout=60)
    box = McpToolbox({"kv": conf}, log_dir=tmp_path)
    await box.start()
    try:
        yield box
    finally:
        await box.close()


async def run(box: McpToolbox, name: str, **arguments):
    async with box.tools_for([]) as tools:
        (tool,) = [t for t in tools if t.name == name]
        return tool, await tool.run(arguments)


async def test_calls_return_what_the_server_returned(kv):
    tool, put = await run(kv, "kv__put", key="colour", value="teal")
    assert (put.observation, put.ok) == ("stored colour", True)
    assert tool.action_type == "mcp_call"
    assert tool.params({"key": "colour", "value": "teal"}) == {
        "server": "kv",
        "tool": "put",
        "arguments": {"key": "colour", "value": "teal"},
    }
    assert tool.spec()["function"]["parameters"]["required"] == ["key", "value"]
    _, got = await run(kv, "kv__get", key="colour")
    assert (got.observation, got.ok) == ("teal", True)
    # an error result is an honest error observation, in the server's own words
    _, missing = await run(kv, "kv__get", key="nothing")
    assert not missing.ok and missing.observation == "Error executing tool get"
    assert missing.error == "get returned an error: Error executing tool get"


async def test_images_and_embedded_resources_are_the_steps_files(kv):
    _, image = await run(kv, "kv__swatch", red=255, green=0, blue=0, size=4)
    (png,) = image.files
    assert (png.name, png.media_type, png.kept) == ("swatch-1.png", "image/png", True)
    assert png.data.startswith(PNG) and png.size == len(png.data)
    assert png.sha256 == hashlib.sha256(png.data).hexdigest()
    assert image.observation == f"[image/png swatch-1.png ({png.size} bytes): kept with this step]"
    await run(kv, "kv__put", key="a", value="1")
    _, csv = await run(kv, "kv__export_csv")
    (f,) = csv.files
    assert (f.name, f.media_type) == ("store.csv", "text/csv")
    assert f.data.decode().startswith("key,value\n") and "a,1\n" in f.data.decode()
    assert csv.observation.splitlines()[1:3] == ["key,value", "a,1"]


async def test_a_crashed_stdio_server_is_restarted_for_the_next_call(tmp_path):
    box = McpToolbox({"kv": stdio_server()}, log_dir=tmp_path)
    await box.start()
    try:
        _, first = await run(box, "kv__pid")
        _, crashed = await run(box, "kv__crash")
        assert not crashed.ok
        assert crashed.observation == "kv.crash failed: the connection to MCP server 'kv' closed"
        _, after = await run(box, "kv__pid")
        assert after.ok and after.observation != first.observation
        assert box.connections["kv"].restarts == 1
    finally:
        await box.close()


async def test_a_hanging_call_times_out_and_a_hung_server_is_restarted(tmp_path):
    box = McpToolbox({"kv": stdio_server(timeout=5)}, log_dir=tmp_path)
    await box.start()
    try:
        _, first = await run(box, "kv__pid")
        _, slow = await run(box, "kv__nap", seconds=60)
        assert (slow.ok, slow.error) == (False, "nap timed out after 5 s")
        _, same = await run(box, "kv__pid")  # only that call hung: the server still answers
        assert same.observation == first.observation
        _, frozen = await run(box, "kv__freeze", seconds=60)
        assert (frozen.ok, frozen.error) == (False, "freeze timed out after 5 s")
        _, fresh = await run(box, "kv__pid")  # the whole server hung: a new one answers
        assert fresh.ok and fresh.observation != first.observation
    finally:
        await box.close()


@pytest.mark.parametrize(
    "conf, says",
    [
        (
            McpServerSettings(command="/nonexistent/kv-server"),
            "MCP server 'kv' (/nonexistent/kv-server) did not start: FileNotFoundError: ",
        ),
        (
            stdio_server("--fail-at-start"),
            "did not start: Connection closed (it said: kv: cannot open its database)",
        ),
        (
            McpServerSettings(
                command=sys.executable,
                args=["-c", "import time; time.sleep(60)"],
                startup_timeout=1,
            ),
            "did not answer within 1 s",
        ),
        (McpServerSettings(url="http://127.0.0.1:9/mcp"), "cannot be reached: ConnectError"),
    ],
)
async def test_a_server_that_never_starts_fails_the_start_in_one_line(tmp_path, conf, says):
    box = McpToolbox({"kv": conf, "fine": stdio_server()}, log_dir=tmp_path)
    with pytest.raises(DependencyUnavailable) as err:
        await box.start()
    message = str(err.value)
    assert message.startswith("MCP server 'kv' (") and says in message
    assert "\n" not in message
    assert not box.connections["fine"]._owner  # the others were stopped again


async def test_which_tools_a_task_is_offered(tmp_path):
    box = McpToolbox(
        {
            "kv": stdio_server(tools=["put", "get", "keys", "nosuch"]),
            "extra": stdio_server(default=False, tools=["pid"]),
        },
        log_dir=tmp_path,
    )
    await box.start()
    try:

        def names(expected):
            return sorted(t.name for s in box.select(expected).values() for t in s)

        assert names([]) == ["get", "keys", "put"]  # the allow-list; `extra` only when named
        assert names(["python_executor"]) == ["get", "keys", "put"]
        assert names(["kv.get"]) == ["get"]
        assert names(["kv__put", "extra", "browser"]) == ["pid", "put"]
        assert names(["kv", "kv.get"]) == ["get", "keys", "put"]
        assert names(["kv.crash"]) == ["get", "keys", "put"]  # not offered: nothing named
    finally:
        await box.close()


def test_function_names_are_safe_and_unique():
    assert function_name("kv", "get") == "kv__get"
    odd, other = function_name("kv", "read.file"), function_name("kv", "read_file")
    assert odd.startswith("kv__read_file_") and odd != other
    long = function_name("search-engine", "x" * 80)
    assert len(long) == 64 and long != function_name("search-engine", "x" * 81)


# ---- the agent loop with the stub LLM choosing MCP tools ---------------------------------------

SCRIPT = [
    {
        "match": "^mcp-native ",
        "replies": [
            reply("I store the colour.", call("kv__put", key="colour", value="red")),
            reply(
                None,
                call("kv__get", key="colour"),
                call("kv__swatch", red=255, green=0, blue=0, size=2),
            ),
            reply(None, call("kv__secret")),
            reply(None, call("finish", answer="red")),
        ],
    },
    {
        "match": "^mcp-text ",
        "replies": [
            "I store it.\n```json\n"
            '{"tool": "kv.put", "arguments": {"key": "k", "value": "v"}}\n```',
            "FINAL ANSWER: v",
        ],
    },
]


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    with scripted_stub(SCRIPT, tmp_path_factory.mktemp("mcp-stub")) as url:
        yield url


async def agent_steps(box, stub, description, protocol):
    from adp.schemas.contracts import Task

    steps = []

    async def emit(step):
        steps.append(step)

    task = Task(task_id="t", task_type="reasoning", description=description, max_steps=6)
    async with box.tools_for(task.expected_tools) as tools:
        outcome = await Agent(client(stub), tools, "Use the tools.", protocol=protocol).run(
            task, emit
        )
    return outcome, steps


async def test_an_mcp_call_is_a_step_like_any_other(kv, stub, caplog):
    caplog.set_level(logging.DEBUG)
    outcome, steps = await agent_steps(kv, stub, "mcp-native colour", "tools")
    assert (outcome.success, outcome.final_result) == (True, "red")
    put, both, secret, final = steps
    assert (put.action_type, put.observation, put.success) == ("mcp_call", "stored colour", True)
    assert put.action_params == {
        "server": "kv",
        "tool": "put",
        "arguments": {"key": "colour", "value": "red"},
    }
    assert put.thinking == "I store the colour." and put.llm is not None
    offered = {t["function"]["name"] for t in put.llm.request["tools"]}
    assert {"kv__put", "kv__swatch", "finish"} <= offered
    assert both.action_type == "tool_calls"
    assert [c["tool"] for c in both.action_params["calls"]] == ["get", "swatch"]
    assert both.observation.startswith("[1] kv__get:\nred\n\n[2] kv__swatch:\n[image/png")
    (png,) = both.artifacts
    assert png.kept and both.blobs[png.sha256].startswith(PNG)
    # the secret reached the stdio server through its env entry, and nothing else
    stdio = kv.servers["kv"].transport == "stdio"
    assert secret.observation == ("KV_TOKEN is set" if stdio else "KV_TOKEN is missing")
    assert TOKEN not in json.dumps([s.model_dump(mode="json") for s in steps])
    assert TOKEN not in caplog.text
    assert final.action_type == "final_answer"


async def test_the_text_protocol_calls_mcp_tools_by_their_dotted_name(kv, stub):
    outcome, steps = await agent_steps(kv, stub, "mcp-text store", "text")
    assert outcome.final_result == "v"
    assert steps[0].action_type == "mcp_call" and steps[0].observation == "stored k"
    system = steps[0].llm.request["messages"][0]["content"]
    assert "- kv__put(key: string, value: string): [kv] Store a value under a key." in system
