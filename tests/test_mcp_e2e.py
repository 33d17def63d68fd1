"""A reasoning task that must use an MCP server goes through Kafka end to end: `adp produce`,
`adp runtime reasoning` with the SDK-written kv server configured in the TOML config file
([mcp.servers.kv], over stdio), the stub LLM choosing its tools, `adp aggregate`; the
trajectory holds the server's real results and its image as a stored artifact, and the chat
and ATIF exports list the MCP tools and answer each call right after it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import jsonschema
import pytest

from adp.connectors.export.atif import SCHEMA_FILE, rfc_problems
from adp.connectors.export.chat import chat_problems
from tests.helpers import (
    ADP,
    KV_SERVER,
    AdpProcess,
    call,
    reply,
    scripted_stub,
    trajectory_files,
    wait_for,
    write_tasks,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
TOKEN = "e2e-token-5b7d-never-in-a-trajectory"

SCRIPT = [
    {
        "match": "^mcp-e2e ",
        "replies": [
            reply("I keep the colour in the store.", call("kv__put", key="sky", value="blue")),
            reply("Now I read it back.", call("kv__get", key="sky")),
            reply("And I draw it.", call("kv__swatch", red=0, green=0, blue=255, size=3)),
            reply(None, call("kv__secret")),
            reply("The store says blue.", call("finish", answer="blue")),
        ],
    }
]


def config(tmp_path) -> str:
    path = tmp_path / "adp.toml"
    path.write_text(
        "[mcp.servers.kv]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(KV_SERVER)}]\n"
        f'env = {{ KV_TOKEN = "{TOKEN}" }}\n'
        "timeout = 30\n"
    )
    return str(path)


def test_a_reasoning_task_uses_an_mcp_server_through_kafka(kafka, tmp_path):
    out = tmp_path / "trajectories"
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {
                "task_id": "mcp-e2e-sky",
                "task_type": "reasoning",
                "description": "mcp-e2e What colour is the sky in the store?",
                "expected_tools": ["kv"],
                "max_steps": 8,
                "timeout": 240,
            }
        ],
    )
    with scripted_stub(SCRIPT, tmp_path) as url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": url,
            "ADP_LLM_MODEL": "stub",
            "ADP_METRICS_PORT": "0",
            "ADP_HOME": str(tmp_path / "home"),
            "ADP_CONFIG": config(tmp_path),
        }
        procs = [
            AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start(),
            AdpProcess(["runtime", "reasoning"], tmp_path / "rt.log", env).start(),
        ]
        try:
            produced = subprocess.run(
                [*ADP, "produce", "--quiet", str(tasks)],
                env=procs[0].env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert produced.returncode == 0, produced.stdout + produced.stderr
            wait_for(
                lambda: (out / "mcp-e2e-sky.json").exists(),
                300,
                "the trajectory",
                check=lambda: [p.assert_alive() for p in procs],
            )
        finally:
            for p in procs:
                p.stop()
    runtime_log = (tmp_path / "rt.log").read_text()
    assert "MCP server 'kv' (stdio, shared session) offers 10 tool(s)" in runtime_log
    trajectory = trajectory_files(out)["mcp-e2e-sky"]
    assert trajectory["final_result"] == "blue"
    put, got, drawn, secret, final = trajectory["steps"]
    assert [s["action_type"] for s in (put, got, drawn, secret)] == ["mcp_call"] * 4
    assert put["action_params"] == {
        "server": "kv",
        "tool": "put",
        "arguments": {"key": "sky", "value": "blue"},
    }
    assert (put["observation"], got["observation"]) == ("stored sky", "blue")
    assert got["llm"]["request"]["messages"][-1]["content"] == "stored sky"  # what it was shown
    (png,) = drawn["artifacts"]
    stored = (out / "mcp-e2e-sky" / "step-3" / png["name"]).read_bytes()
    assert stored.startswith(b"\x89PNG") and hashlib.sha256(stored).hexdigest() == png["sha256"]
    assert secret["observation"] == "KV_TOKEN is set"
    assert final["action_type"] == "final_answer"
    for text in (json.dumps(trajectory), runtime_log):
        assert TOKEN not in text

    data = tmp_path / "chat"
    exported = subprocess.run(
        [*ADP, "export", str(out), "--format", "chat", "--out", str(data), "--validation", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    (row,) = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    tools = {t["function"]["name"]: t["function"] for t in row["tools"]}
    assert tools["kv__put"]["parameters"]["required"] == ["key", "value"]
    assert {"kv__get", "kv__swatch", "python", "goto", "finish"} <= set(tools)
    assert chat_problems(row["messages"], row["tools"]) == []
    roles = [m["role"] for m in row["messages"]]
    assert roles[:4] == ["system", "user", "assistant", "tool"]
    assert row["messages"][3]["content"] == "stored sky"

    atif = tmp_path / "atif"
    exported = subprocess.run(
        [*ADP, "export", str(out), "--format", "atif", "--out", str(atif), "--validation", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    (doc,) = [json.loads(p.read_text()) for p in (atif / "train").rglob("*.json")]
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert rfc_problems(doc) == []
    assert "kv__swatch" in {t["function"]["name"] for t in doc["agent"]["tool_definitions"]}
