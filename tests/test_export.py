"""`adp export` (a real process) on trajectories made by the real agent loop: the real LLM client
against the scripted stub, the real sandbox, no broker. Each format is loaded back with the
library its users use (`datasets`, pyarrow; jsonschema for ATIF's schema derived from the RFC),
and every chat conversation is checked against the chat format's rules by a checker written
here, independent of the exporter's own."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import datasets
import jsonschema
import pyarrow.parquet as pq
import pytest

from adp.connectors.export.atif import SCHEMA_FILE, rfc_problems
from adp.connectors.export.dataset import FORMATS, Exporter
from adp.connectors.export.select import split_of
from adp.connectors.sinks.base import render
from adp.connectors.sinks.file import write_atomic
from adp.runtimes.agent import Agent
from adp.runtimes.base import RuntimeContext
from adp.runtimes.code import CodeRuntime
from adp.runtimes.tools.python import python_tool
from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox
from adp.runtimes.tools.sandbox.bwrap import sandbox_available
from adp.schemas.contracts import Step, Task, Trajectory, Verdict
from adp.streams.aggregator.build import build_trajectory
from adp.streams.runtime.step_encoding import StepEncoding
from tests.helpers import ADP, call, client, reply, scripted_stub

pytestmark = pytest.mark.skipif(
    sandbox_available() is not None, reason=f"bubblewrap unusable: {sandbox_available()}"
)

SCRIPT = [
    {
        "match": "two sums",
        "replies": [
            reply("I compute the first.", call("python", code="print(2 + 3)")),
            reply(None, call("python", code="print(4 + 5)"), call("python", code="print(6 + 7)")),
            reply("Done.", call("finish", answer="5, 9 and 13")),
        ],
    },
    {"match": "factorial", "replies": ["```python\nprint(120)\n```", "FINAL ANSWER: 120"]},
    {"match": "mute", "replies": ["", "FINAL ANSWER: 7"]},
]


async def run(runner, task: Task) -> tuple:
    steps = []

    async def emit(step) -> None:
        steps.append(step)

    return await runner.run(task, emit), steps


def trajectory(
    task: Task, steps: list, outcome, verdict: Verdict | None = None, t0: float = 1.8e9
) -> Trajectory:
    numbered = [
        s.numbered(i) if hasattr(s, "numbered") else s.model_copy(update={"step_id": i})
        for i, s in enumerate(steps, 1)
    ]
    return build_trajectory(
        f"a-{task.key}",
        {"timestamp": t0, "runtime_id": "test", "task": task.model_dump(mode="json")},
        {
            "timestamp": t0 + 5,
            "runtime_id": "test",
            "finish": {
                "success": outcome.success,
                "final_result": outcome.final_result,
                "total_duration": 5.0,
                "step_count": len(numbered),
                "verdict": verdict.model_dump(mode="json") if verdict else None,
            },
        },
        [s.model_dump(mode="json") for s in numbered],
    )


@pytest.fixture(scope="module")
async def folder(tmp_path_factory) -> Path:
    """Trajectories of the tool protocol (with a two-call step), the text protocol (code
    runtime), an empty assistant turn, a step made without the model, and two identical
    samples of one task."""
    work = tmp_path_factory.mktemp("export")
    out = work / "trajectories"
    sandbox, limits = make_sandbox(), SandboxLimits()
    with scripted_stub(SCRIPT, work) as url:
        model = client(url)
        agent = Agent(model, [python_tool(sandbox, limits)], "You are careful.", protocol="tools")
        code = CodeRuntime(RuntimeContext("test-code", model))
        tools_task = Task(task_id="sums", task_type="reasoning", description="Do two sums.")
        outcome, steps = await run(agent, tools_task)
        passed = Verdict(verifier="answer", passed=True, score=1.0)
        made = [trajectory(tools_task, steps, outcome, passed)]
        for index in (0, 1):  # two samples that said exactly the same
            task = Task(
                task_id="fact",
                task_type="code",
                description="The factorial of 5.",
                samples=2,
                sample_index=index,
            )
            outcome, steps = await run(code, task)
            made.append(
                trajectory(
                    task, steps, outcome, Verdict(verifier="answer", passed=False, score=0.0)
                )
            )
        mute = Task(task_id="mute", task_type="code", description="Say mute things.")
        outcome, steps = await run(code, mute)
        made.append(trajectory(mute, steps, outcome))
        opened = Step(
            step_id=1,
            action_type="goto",
            action_params={"url": "http://x/"},
            observation="Welcome page",
            success=True,
            timestamp=1.8e9,
            duration=0.1,
        )
        web = Task(task_id="web", task_type="web", description="Do two sums, web.")
        outcome, steps = await run(agent, web)
        made.append(trajectory(web, [opened, *steps], outcome))
        await model.aclose()
    for t in made:
        write_atomic(out / f"{t.key}.json", render(t))
    return out


def export(folder: Path, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [*ADP, "export", str(folder), "--out", str(out), "--json", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def split_rows(out: Path) -> dict[tuple[str, int], dict]:
    """(split, line) -> row of every split file there is."""
    rows = {}
    for split in ("train", "validation"):
        path = out / f"{split}.jsonl"
        if path.exists():
            for n, line in enumerate(path.read_text().splitlines()):
                rows[(split, n)] = json.loads(line)
    return rows


# ---- an independent checker of the chat format ---------------------------------------------------


def check_chat(row: dict) -> None:
    messages = row["messages"]
    assert set(row) <= {"messages", "tools"}  # OpenAI refuses other keys
    roles = [m["role"] for m in messages]
    assert set(roles) <= {"system", "user", "assistant", "tool"}
    assert "system" not in roles[1:] and roles[-1] == "assistant"
    open_calls: set[str] = set()
    for m in messages:
        assert isinstance(m["content"], str)
        if m["role"] in ("user", "assistant"):
            assert not open_calls, f"unanswered tool calls {open_calls}"
        if m["role"] == "assistant":
            assert m["content"].strip() or m.get("tool_calls"), "an empty assistant turn"
            for c in m.get("tool_calls") or []:
                assert c["type"] == "function" and c["id"] and c["function"]["name"]
                json.loads(c["function"]["arguments"])
                open_calls.add(c["id"])
        if m["role"] == "tool":
            assert m["tool_call_id"] in open_calls
            open_calls.discard(m["tool_call_id"])
    names = {t["function"]["name"] for t in row.get("tools") or []}
    for m in messages:
        for c in m.get("tool_calls") or []:
            assert c["function"]["name"] in names


def test_chat_loads_with_datasets_and_keeps_the_rules(folder, tmp_path):
    facts = export(folder, tmp_path, "--format", "chat", "--validation", "0.5")
    # the mute task had an empty assistant turn: left out, said why; the two samples were equal
    assert facts["left_out"] == {"an empty assistant turn": 1} and facts["duplicates"] == 1
    lines = split_rows(tmp_path)
    assert len(lines) == 3
    for row in lines.values():
        check_chat(row)
    loaded = datasets.load_dataset(str(tmp_path))  # through the card's `configs`
    assert sum(len(d) for d in loaded.values()) == 3
    index = {
        i["key"]: (i["split"], i["line"])
        for i in map(json.loads, (tmp_path / "index.jsonl").read_text().splitlines())
    }
    assert set(index) == {"sums", "fact", "web"}
    sums = lines[index["sums"]]
    # rebuilt from the exchanges: the two-call reply and both results, the real outputs
    calls = [m for m in sums["messages"] if m.get("tool_calls")]
    assert [len(m["tool_calls"]) for m in calls] == [1, 2, 1]
    assert [m["content"] for m in sums["messages"] if m["role"] == "tool"] == ["5\n", "9\n", "13\n"]
    assert json.loads(calls[-1]["tool_calls"][0]["function"]["arguments"]) == {
        "answer": "5, 9 and 13"
    }


def test_split_is_by_task_so_samples_stay_together(folder, tmp_path):
    for validation in (0.3, 0.7):
        out = tmp_path / str(validation)
        export(folder, out, "--format", "chat", "--validation", str(validation), "--no-dedup")
        index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
        assert sorted(r["key"] for r in index) == ["fact", "fact/1", "sums", "web"]
        for row in index:  # the task_id alone decides, the same way every time
            assert row["split"] == split_of(row["task_id"], validation)
    assert {split_of(t, 0.5) for t in ("fact", "sums", "web", "mute", "a", "b")} == {
        "train",
        "validation",
    }
    again = tmp_path / "again"
    export(folder, again, "--format", "chat", "--validation", "0.3", "--no-dedup")
    for path in (tmp_path / "0.3").glob("*.jsonl"):
        assert (again / path.name).read_bytes() == path.read_bytes()


def test_sharegpt_loads_and_alternates(folder, tmp_path):
    export(folder, tmp_path, "--format", "sharegpt", "--validation", "0")
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"))["train"]
    assert len(loaded) == 3
    for row in loaded:
        turns = row["conversations"]
        assert len(turns) % 2 == 0 and row["system"]
        for i, t in enumerate(turns):
            assert t["from"] in (
                ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
            )
    sums = next(r for r in loaded if r["key"] == "sums")
    kinds = [t["from"] for t in sums["conversations"]]
    assert kinds == [
        "human",
        "function_call",
        "observation",
        "function_call",
        "observation",
        "function_call",
    ]
    assert json.loads(sums["conversations"][4]["value"]) == ["9\n", "13\n"]
    assert {t["name"] for t in json.loads(sums["tools"])} == {"python", "finish"}


def test_parquet_loads_with_datasets_and_pyarrow(folder, tmp_path):
    export(folder, tmp_path, "--format", "parquet", "--validation", "0", "--no-dedup")
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.num_rows == 4
    assert {"key", "task_id", "verdict", "messages", "tools", "cost_usd"} <= set(table.column_names)
    loaded = datasets.load_dataset("parquet", data_dir=str(tmp_path))["train"]
    assert sorted(loaded["key"]) == ["fact", "fact/1", "sums", "web"]
    row = next(r for r in loaded if r["key"] == "sums")
    assert row["verdict"] == "passed" and row["messages"][-1]["role"] == "assistant"
    check_chat(
        {
            "messages": [{k: v for k, v in m.items() if v is not None} for m in row["messages"]],
            "tools": json.loads(row["tools"]),
        }
    )


def test_atif_validates_against_the_rfc(folder, tmp_path):
    export(folder, tmp_path, "--format", "atif", "--validation", "0", "--no-dedup")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    docs = {
        p.relative_to(tmp_path / "train").as_posix(): json.loads(p.read_text())
        for p in (tmp_path / "train").rglob("*.json")
    }
    assert sorted(docs) == ["fact.json", "fact/1.json", "mute.json", "sums.json", "web.json"]
    for doc in docs.values():
        jsonschema.validate(doc, schema)
        assert rfc_problems(doc) == []
    sums = docs["sums.json"]
    assert [s["source"] for s in sums["steps"]] == ["system", "user", "agent", "agent", "agent"]
    two = sums["steps"][3]
    assert [r["content"] for r in two["observation"]["results"]] == ["9\n", "13\n"]
    assert [r["source_call_id"] for r in two["observation"]["results"]] == [
        c["tool_call_id"] for c in two["tool_calls"]
    ]
    assert sums["extra"]["verification"]["passed"] is True
    assert sums["final_metrics"]["total_prompt_tokens"] > 0
    web = docs["web.json"]["steps"]
    assert (
        web[2]["source"] == "system"
        and web[2]["observation"]["results"][0]["content"] == "Welcome page"
        and web[2]["extra"]["action_type"] == "goto"
    )
    code = docs["fact.json"]["steps"][2]  # text protocol: an action without a tool call
    assert "tool_calls" not in code and code["observation"]["results"] == [{"content": "120\n"}]
    # and the checker notices what the RFC forbids
    broken = json.loads(json.dumps(sums))
    broken["steps"][0]["model_name"] = "x"
    broken["steps"][3]["observation"]["results"][0]["source_call_id"] = "nope"
    broken["steps"][4]["step_id"] = 9
    assert len(rfc_problems(broken)) == 3


def test_filters_and_the_card(folder, tmp_path):
    facts = export(folder, tmp_path, "--format", "chat", "--verified-only", "--validation", "0")
    assert facts["trajectories"] == {"train": 1}
    assert facts["filtered"] == {"not verified": 4}
    card = (tmp_path / "README.md").read_text()
    assert "- split: train" in card and "path: train.jsonl" in card
    assert "| reasoning | 1 | 1 | 100% (1/1) | 100% (1/1) | 1 | 0 | 0 | 0 |" in card
    assert "model `stub-model`" in card and "## Schema of a row" in card
    assert "verified only" in card
    code = export(
        folder,
        tmp_path / "code",
        "--format",
        "chat",
        "--type",
        "code",
        "--min-steps",
        "2",
        "--max-steps",
        "2",
        "--validation",
        "0",
    )
    assert code["trajectories"] == {"train": 1} and code["duplicates"] == 1
    future = export(
        folder,
        tmp_path / "future",
        "--format",
        "chat",
        "--since",
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(2e9)),
    )
    assert future["trajectories"] == {} and future["filtered"] == {"finished before --since": 5}


def test_requests_stored_as_what_they_add_export_exactly_as_whole_ones(folder, tmp_path):
    """Trajectories as the aggregator now writes them (each request stored as what it adds to
    the previous call's: streams/runtime/step_encoding.py) export to the same bytes, in every
    format, as the same trajectories with every request whole."""
    whole = [Trajectory.model_validate_json(p.read_bytes()) for p in sorted(folder.rglob("*.json"))]
    compact = []
    for t in whole:
        encoding = StepEncoding()
        compact.append(t.model_copy(update={"steps": [encoding.compact(s) for s in t.steps]}))
    assert sum(1 for t in compact for s in t.steps if s.llm and s.llm.prefix_step) >= 4
    for fmt in FORMATS:
        if fmt == "tokens":  # rows of recorded token ids, no request read (test_rl_export.py)
            continue
        files = []
        for name, trajectories in (("whole", whole), ("compact", compact)):
            exporter = Exporter(fmt, tmp_path / f"{name}-{fmt}", validation=0.5, dedup=False)
            for t in trajectories:
                exporter.add(t)
            exporter.close()
            root = tmp_path / f"{name}-{fmt}"
            files.append({p.relative_to(root): p.read_bytes() for p in root.rglob("*.*")})
        assert files[0] and files[0] == files[1], fmt
