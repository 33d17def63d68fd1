"""`adp produce` against the real broker (session fixture `kafka`): what the user sees (exit
codes, messages) from the real CLI in a subprocess, and what arrived on the topics, read back
with aiokafka. Each test uses its own task_id prefix, since the broker is shared."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from adp.schemas import codec
from adp.schemas.contracts import Task, TaskType
from adp.streams import producer as producer_mod
from adp.streams.kafka import clients
from adp.streams.kafka.admin import partition_counts
from adp.streams.kafka.topics import lane_topics, task_topic
from adp.streams.producer import ProduceError, produce_tasks

pytestmark = pytest.mark.kafka

ADP = str(Path(sys.executable).parent / "adp")
TASK_TOPICS = [topic for t in TaskType for topic in lane_topics(t)]


def prefix() -> str:
    return f"p-{uuid.uuid4().hex[:10]}-"


def line(task_id: str, task_type: str = "code", **fields) -> str:
    return json.dumps(
        {"task_id": task_id, "task_type": task_type, "description": f"task {task_id}", **fields}
    )


def write(tmp_path: Path, lines: list[str | bytes], name: str = "tasks.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


async def adp_produce(*args: str, bootstrap: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if bootstrap:
        env["ADP_BOOTSTRAP"] = bootstrap
    return await asyncio.to_thread(
        subprocess.run,
        [ADP, "produce", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


async def read_back(bootstrap: str, pfx: str) -> dict[str, list[tuple[str, Task]]]:
    """Every record on the task topics whose key starts with pfx: topic -> [(key, Task)]."""
    counts = await partition_counts(bootstrap, TASK_TOPICS)
    consumer = await clients.start(clients.consumer(conf=bootstrap))
    try:
        partitions = [TopicPartition(t, p) for t in TASK_TOPICS for p in range(counts[t])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[str, list[tuple[str, Task]]] = {t: [] for t in TASK_TOPICS}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=2000)
            for tp, records in batch.items():
                for rec in records:
                    key = rec.key.decode("utf-8")
                    if key.startswith(pfx):
                        found[tp.topic].append((key, codec.decode(rec.value, expect=Task)))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()


def dead_address() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_bad_input_battery_good_lines_go_through(kafka, tmp_path):
    p = prefix()
    path = write(
        tmp_path,
        [
            line(p + "c1", "code"),  # 1
            line(p + "w1", "web", constraints={"start_url": "http://127.0.0.1/"}, lang="en"),  # 2
            '{"task_id": "' + p + 'bad", "task_type": "code" "description": "x"}',  # 3 malformed
            line(p + "r1", "reasoning", max_steps=3, priority=9),  # 4
            line(p + "t1", max_steps="ten"),  # 5 wrong type
            line(p + "u1", "poetry"),  # 6 unknown type
            json.dumps({"task_type": "code", "description": "no id"}),  # 7 missing id
            line(p + "c1", "web"),  # 8 duplicate
            b'{"task_id": "' + p.encode() + b'nu", "task_type": "code", "description": "\xc3\x28"}',
            "",  # 10 blank
            line(p + "c2", "code", expected_tools=["python"]),  # 11
            line(p + "c3", "code", priority=2),  # 12 low lane
        ],
    )
    proc = await adp_produce(str(path))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr
    assert "line 3: invalid JSON: Expecting ',' delimiter (column " in err
    assert "line 5: max_steps: Input should be a valid integer" in err
    assert "line 6: task_type: Input should be 'reasoning', 'code' or 'web'" in err
    assert "line 7: task_id: missing (required)" in err
    assert f"line 8: duplicate task_id '{p}c1' (first on line 1)" in err
    assert "line 9: not valid UTF-8 at byte " in err
    assert "6 rejected line(s)" in err
    assert "line 10" not in err and "line 11" not in err and "line 12" not in err
    # the summary table: per type and priority lane, and the rejected count
    out = " ".join(re.sub(r"[│┃]", " ", proc.stdout).split())
    assert "code adp.tasks.code 2" in out and "code adp.tasks.code.low 1" in out
    assert "web adp.tasks.web 1" in out and "rejected 6" in out
    assert "reasoning adp.tasks.reasoning 0" in out  # the default lane is always listed
    assert "reasoning adp.tasks.reasoning.high 1" in out
    assert "web adp.tasks.web.high" not in out  # other lanes only where tasks went

    got = await read_back(kafka.bootstrap, p)
    # each task on its type's lane for its priority: 9 -> high, 2 -> low, default 5 -> default
    assert sorted(k for k, _ in got["adp.tasks.code"]) == [p + "c1", p + "c2"]
    assert [k for k, _ in got["adp.tasks.code.low"]] == [p + "c3"]
    assert [k for k, _ in got["adp.tasks.web"]] == [p + "w1"]
    assert [k for k, _ in got["adp.tasks.reasoning.high"]] == [p + "r1"]
    assert sum(map(len, got.values())) == 5
    tasks = {k: t for recs in got.values() for k, t in recs}
    assert all(k == t.task_id for k, t in tasks.items())
    assert tasks[p + "c1"].task_type == "code"  # the first c1 won, not the web duplicate
    assert tasks[p + "c2"].expected_tools == ["python"]
    assert tasks[p + "w1"].constraints == {"start_url": "http://127.0.0.1/"}
    assert tasks[p + "w1"].metadata == {"lang": "en"}
    assert (tasks[p + "r1"].max_steps, tasks[p + "r1"].priority) == (3, 9)


async def test_all_good_exit_0_and_ten_megabyte_description(kafka, tmp_path):
    p = prefix()
    big = ("0123456789abcdef" * 65536 * 10)[: 10 * 1024 * 1024]  # 10 MiB
    path = write(
        tmp_path, [line(p + "big", "reasoning", description=big), line(p + "small", "web")]
    )
    proc = await adp_produce(str(path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --quiet: no table
    got = await read_back(kafka.bootstrap, p)
    [(key, task)] = got["adp.tasks.reasoning"]
    assert key == p + "big" and task.description == big
    assert [k for k, _ in got["adp.tasks.web"]] == [p + "small"]


async def test_stdin_and_json_output(kafka):
    p = prefix()
    text = "\n".join([line(p + "a"), "{oops", line(p + "b", "web")]) + "\n"
    proc = await asyncio.to_thread(
        subprocess.run,
        [ADP, "produce", "-", "--json"],
        input=text,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, ADP_BOOTSTRAP=kafka.bootstrap),
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)  # one JSON object, nothing else on stdout
    assert report["file"] == "<stdin>" and report["total_sent"] == 2
    assert report["sent"] == {"reasoning": 0, "code": 1, "web": 1}
    assert [r["line"] for r in report["rejected"]] == [2] and report["error"] is None
    got = await read_back(kafka.bootstrap, p)
    assert [k for k, _ in got["adp.tasks.code"]] == [p + "a"]
    assert [k for k, _ in got["adp.tasks.web"]] == [p + "b"]


async def test_nothing_to_send_exit_2(kafka, tmp_path):
    p = prefix()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    proc = await adp_produce(str(empty))
    assert proc.returncode == 2
    assert "adp produce: nothing to send: " in proc.stderr and "contains no tasks" in proc.stderr

    proc = await adp_produce(str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    assert "tasks file not found: " in proc.stderr and "missing.jsonl" in proc.stderr

    proc = await adp_produce(str(tmp_path))
    assert proc.returncode == 2 and "is a directory" in proc.stderr

    bad = write(tmp_path, [line(p + "a", "nope"), "{", line(p + "b", priority=0)], "bad.jsonl")
    proc = await adp_produce(str(bad))
    assert proc.returncode == 2
    assert "line 1: task_type" in proc.stderr and "line 2: invalid JSON" in proc.stderr
    assert "line 3: priority: Input should be greater than or equal to 1" in proc.stderr
    assert "nothing to send: all 3 task lines" in proc.stderr
    for result in (proc,):
        assert "Traceback" not in result.stderr
    got = await read_back(kafka.bootstrap, p)
    assert not any(got.values())


async def test_unreachable_broker_exit_3(tmp_path):
    p = prefix()
    path = write(tmp_path, [line(p + "a"), line(p + "b", "web")])
    addr = dead_address()
    proc = await adp_produce(str(path), "--bootstrap", addr)
    assert proc.returncode == 3, proc.stderr
    assert f"cannot reach Kafka at {addr}" in proc.stderr
    assert "0 of 0 tasks handed to the producer were confirmed" in proc.stderr
    assert "Traceback" not in proc.stderr

    with pytest.raises(ProduceError) as info:
        await produce_tasks(path, addr)
    assert info.value.bootstrap == addr and info.value.confirmed == 0


async def test_dry_run_sends_nothing(kafka, tmp_path):
    p = prefix()
    path = write(tmp_path, [line(p + "a"), line(p + "b", "web"), line(p + "a")])
    proc = await adp_produce(str(path), "--dry-run")
    assert proc.returncode == 1, proc.stderr
    assert "dry run: would send" in proc.stdout
    assert f"line 3: duplicate task_id '{p}a' (first on line 1)" in proc.stderr
    # dry run needs no broker at all
    proc = await adp_produce(str(path), "--dry-run", "--bootstrap", dead_address())
    assert proc.returncode == 1
    got = await read_back(kafka.bootstrap, p)
    assert not any(got.values())


async def test_produce_tasks_api_pipelines_many_and_confirms_all(kafka, tmp_path, monkeypatch):
    # A small in-flight window forces the bounded pipelining path many times over.
    monkeypatch.setattr(producer_mod, "MAX_IN_FLIGHT", 50)
    p = prefix()
    types = ["code", "web", "reasoning"]
    lines = [line(f"{p}{i:05d}", types[i % 3], n=i) for i in range(1500)]
    lines.insert(700, "not json")
    path = write(tmp_path, lines)
    seen: list[tuple[int, int]] = []
    report = await produce_tasks(
        path, kafka.bootstrap, progress=lambda done, total: seen.append((done, total))
    )
    assert dict(report.sent) == {"code": 500, "web": 500, "reasoning": 500}
    assert report.rejected == [(701, "line 701: invalid JSON: Expecting value (column 1)")]
    assert report.exit_code == 1 and report.total_sent == 1500
    assert report.topics == sorted(task_topic(t) for t in TaskType)  # all priority 5
    size = path.stat().st_size
    assert seen[-1] == (size, size) and all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))

    got = await read_back(kafka.bootstrap, p)
    for t in types:
        keys = [k for k, _ in got[task_topic(t)]]
        assert len(keys) == len(set(keys)) == 500
    tasks = {k: task for recs in got.values() for k, task in recs}
    assert tasks[f"{p}00042"].metadata == {"n": 42}
    assert tasks[f"{p}00042"].task_type == "code"


async def test_task_too_big_for_the_broker_is_a_rejected_line(kafka, tmp_path, monkeypatch):
    monkeypatch.setattr(producer_mod, "MAX_TASK_BYTES", 2000)
    p = prefix()
    path = write(tmp_path, [line(p + "huge", description="z" * 5000), line(p + "ok")])
    report = await produce_tasks(path, kafka.bootstrap)
    assert dict(report.sent) == {"code": 1}
    [(line_no, msg)] = report.rejected
    assert line_no == 1 and "over the" in msg and msg.startswith("line 1: encoded task is")


async def test_lone_surrogate_escape_is_rejected_not_crashing(kafka, tmp_path):
    p = prefix()
    path = write(tmp_path, [line(p + "s", description="\ud800"), line(p + "ok")])
    proc = await adp_produce(str(path))
    assert proc.returncode == 1, proc.stderr
    assert "line 1: text is not encodable as UTF-8" in proc.stderr
    got = await read_back(kafka.bootstrap, p)
    assert [k for k, _ in got["adp.tasks.code"]] == [p + "ok"]


def test_help_explains_exit_codes():
    proc = subprocess.run([ADP, "produce", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for words in (
        "--bootstrap",
        "--dry-run",
        "--quiet",
        "Exit codes",
        "adp.tasks.<task_type>",
        "adp.tasks.<task_type>.high",
    ):
        assert words in proc.stdout


async def test_rejected_list_is_capped_at_50(tmp_path):
    p = prefix()
    path = write(tmp_path, [line(p + "ok")] + ["{oops"] * 60)
    proc = await adp_produce(str(path), "--dry-run", "--quiet")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert "60 rejected line(s):" in lines
    assert sum(ln.startswith("line ") for ln in lines) == 50
    assert "line 51: invalid JSON" in proc.stderr and "line 52:" not in proc.stderr
    assert lines[-1] == "... and 10 more"
