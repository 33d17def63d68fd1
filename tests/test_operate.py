"""The everyday verbs on the real broker: adp tail, adp status, adp dlq."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest

from adp.app.commands.tail import as_line
from adp.schemas import codec
from adp.schemas.contracts import Finish, Step, StepEvent, Task, Trajectory, TrajectoryMetadata
from adp.streams.inspection.tail import StepFilter, parse_since
from adp.streams.kafka import clients, topics
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks

pytestmark = pytest.mark.kafka


def event(
    task_id: str, kind: str, task_type: str = "code", step_id: int = 1, ok: bool = True
) -> StepEvent:
    now = time.time()
    fields: dict = {}
    if kind == "started":
        fields["task"] = Task(task_id=task_id, task_type=task_type, description="d")
    elif kind == "step":
        fields["step"] = Step(
            step_id=step_id,
            action_type="code_execution",
            action_params={"code": "print(1)"},
            observation="1\n",
            success=ok,
            timestamp=now,
            duration=0.1,
        )
    else:
        fields["finish"] = Finish(success=ok, final_result="1", total_duration=0.2, step_count=1)
    return StepEvent(
        event_type=kind,
        task_id=task_id,
        attempt_id="a1",
        task_type=task_type,
        runtime_id=f"{task_type}-test",
        timestamp=now,
        **fields,
    )


async def send(bootstrap: str, topic: str, items: list[tuple[str, bytes, int | None]]) -> None:
    producer = await clients.start(clients.producer(bootstrap))
    try:
        for key, value, ts in items:
            await producer.send_and_wait(topic, value, key=key.encode(), timestamp_ms=ts)
    finally:
        await producer.stop()


def send_events(bootstrap: str, events: list[StepEvent], timestamp_ms: int | None = None):
    asyncio.run(
        send(bootstrap, topics.STEPS, [(e.task_id, codec.encode(e), timestamp_ms) for e in events])
    )


class Lines:
    """A child process's stdout lines, read in a thread so the test can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.q, self.seen = proc, queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.q.put(line)

    def until(self, predicate, timeout: float = 60) -> list[str]:
        def drained() -> bool:
            while not self.q.empty():
                self.seen.append(self.q.get())
            return any(predicate(line) for line in self.seen)

        wait_for(drained, timeout, "tail output")
        return self.seen


def test_parse_since_and_filter():
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("2026-11-27T10:00:00+00:00") == 1795773600.0
    keep = StepFilter(frozenset({"x"}), "code", None, False)
    assert keep(event("x", "step", ok=False)) and not keep(event("x", "step", ok=True))
    assert not keep(event("y", "step", ok=False)) and keep(event("x", "started"))


def test_tail_lane_filter_follows_the_attempts_that_started_in_the_lane():
    high = event("urgent", "started")
    high.task.priority = 9
    low = event("backlog", "started")
    low.task.priority = 2
    keep = StepFilter(lane="high")
    assert keep(high) and not keep(low)
    assert keep(event("urgent", "step")) and not keep(event("backlog", "step"))
    assert keep(event("urgent", "finished"))
    # after its finished event the attempt is forgotten: a stray event of it no longer passes
    assert not keep(event("urgent", "step"))
    assert "(priority 9, high lane)" in as_line(high) and "default lane" in as_line(
        event("plain", "started")
    )


def test_tail_follows_live_with_filters_and_stops_on_ctrl_c(kafka):
    send_events(kafka.bootstrap, [event("tail-a", "started"), event("tail-b", "started", "web")])
    proc = subprocess.Popen(
        [*ADP, "tail", "--json", "--from-beginning", "--type", "code", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, ADP_BOOTSTRAP=kafka.bootstrap),
    )
    lines = Lines(proc)
    try:
        lines.until(lambda line: '"tail-a"' in line)
        # events produced while tail runs show up: it follows live
        send_events(
            kafka.bootstrap,
            [
                event("tail-a", "step"),
                event("tail-a", "finished"),
                event("tail-b", "finished", "web"),
            ],
        )
        seen = lines.until(lambda line: '"finished"' in line and '"tail-a"' in line)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    decoded = [json.loads(line) for line in seen]
    assert [(e["task_id"], e["event_type"]) for e in decoded] == [
        ("tail-a", "started"),
        ("tail-a", "step"),
        ("tail-a", "finished"),
    ]
    assert all(e["task_type"] == "code" for e in decoded)


def test_tail_since_skips_older_events(kafka):
    two_hours_ago = int((time.time() - 7200) * 1000)
    send_events(kafka.bootstrap, [event("since-old", "started")], timestamp_ms=two_hours_ago)
    send_events(kafka.bootstrap, [event("since-new", "started")])
    proc = subprocess.Popen(
        [*ADP, "tail", "--json", "--since", "1h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, ADP_BOOTSTRAP=kafka.bootstrap),
    )
    lines = Lines(proc)
    try:
        seen = lines.until(lambda line: "since-new" in line)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not any("since-old" in line for line in seen)


def trajectory(task_id: str, ok: bool) -> Trajectory:
    return Trajectory(
        task_id=task_id,
        task_type="code",
        description="d",
        success=ok,
        steps=[],
        final_result="",
        total_duration=1.0,
        metadata=TrajectoryMetadata(
            runtime_id="r",
            attempt_id="a",
            started_at=1,
            finished_at=2,
            llm_calls=0,
            prompt_tokens=0,
            completion_tokens=0,
            cached_llm_calls=0,
            task={},
        ),
    )


def test_status_counts_produced_pending_finished_failed(kafka, tmp_path):
    env = dict(os.environ, ADP_BOOTSTRAP=kafka.bootstrap)
    tasks = write_tasks(
        tmp_path / "t.jsonl",
        [{"task_id": f"status-{i}", "task_type": "web", "description": "d"} for i in range(3)]
        + [{"task_id": "status-urgent", "task_type": "web", "description": "d", "priority": 10}],
    )
    assert subprocess.run([*ADP, "produce", "--quiet", str(tasks)], env=env).returncode == 0
    asyncio.run(
        send(
            kafka.bootstrap,
            topics.TRAJECTORIES,
            [
                ("status-0", codec.encode(trajectory("status-0", True)), None),
                ("status-1", codec.encode(trajectory("status-1", False)), None),
            ],
        )
    )
    out = subprocess.run(
        [*ADP, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    rows = {r["task_type"]: r for r in json.loads(out.stdout)}
    # the trajectories above are typed "code"; the produced tasks are "web"
    assert rows["web"]["produced"] == 4 and rows["web"]["pending"] == 4
    assert rows["web"]["members"] == 0 and rows["web"]["running"] == 0
    # per priority lane, highest first
    assert rows["web"]["lanes"] == {
        "high": {"produced": 1, "pending": 1, "running": 0},
        "default": {"produced": 3, "pending": 3, "running": 0},
        "low": {"produced": 0, "pending": 0, "running": 0},
    }
    assert list(rows["web"]["lanes"]) == ["high", "default", "low"]
    assert rows["code"]["lanes"]["high"]["produced"] == 0
    assert rows["code"]["finished"] == 2 and rows["code"]["failed"] == 1
    table = subprocess.run([*ADP, "status"], env=env, capture_output=True, text=True)
    assert "web" in table.stdout and "produced" in table.stdout
    assert "high lane" in table.stdout  # web used a lane besides the default one
    assert table.stdout.count("high lane") == 1  # ... and only web did


def test_runtime_dead_letters_bad_messages_and_keeps_going(kafka, llm_stub, tmp_path):
    env = {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_LLM_BASE_URL": llm_stub, "ADP_METRICS_PORT": "0"}
    web_task = Task(task_id="dlq-wrong-topic", task_type="web", description="d")
    asyncio.run(
        send(
            kafka.bootstrap,
            topics.task_topic("code"),
            [
                ("dlq-garbage", b"\x00not avro at all", None),
                ("dlq-wrong-topic", codec.encode(web_task), None),
                (
                    "dlq-good",
                    codec.encode(
                        Task(task_id="dlq-good", task_type="code", description="print something")
                    ),
                    None,
                ),
                # plain JSON, as kcat or kafka-console-producer send it: validated like adp produce
                (
                    "dlq-json-good",
                    b'{"task_id": "dlq-json-good", "task_type": "code", "description": "print 42"}',
                    None,
                ),
                ("dlq-json-bad", b'{"task_id": "dlq-json-bad", "task_type": "code"}', None),
            ],
        )
    )
    rt = AdpProcess(["runtime", "code"], tmp_path / "rt.log", env).start()
    try:

        def listed():
            out = subprocess.run(
                [*ADP, "dlq", "--json"], env=rt.env, capture_output=True, text=True, timeout=60
            )
            rows = [json.loads(line) for line in out.stdout.splitlines()]
            return rows if len(rows) >= 3 else None

        rows = wait_for(listed, 120, "three dead letters", check=rt.assert_alive)
        for good in ("dlq-good", "dlq-json-good"):
            wait_for(
                lambda good=good: f"task {good}: finished success=True" in rt.log(200),
                120,
                f"the good task {good} to finish",
                check=rt.assert_alive,
            )
    finally:
        rt.stop()
    by_key = {r["key"]: r for r in rows}
    assert "not Avro" in by_key["dlq-garbage"]["reason"]
    assert "does not belong" in by_key["dlq-wrong-topic"]["reason"]
    assert "description: missing (required)" in by_key["dlq-json-bad"]["reason"]
    assert "dlq-json-good" not in by_key
    assert by_key["dlq-garbage"]["source"].startswith("adp.tasks.code[")


def test_the_kafka_source_reads_the_last_record_of_each_key_once(kafka):
    """`adp export kafka` / `adp verify kafka` read adp.trajectories as compaction keeps it: the
    last record of each key wins and a tombstone deletes the key
    (streams/inspection/trajectories.py
    reads it in two passes, so memory follows the keys, not the topic)."""
    from adp.streams.inspection.trajectories import ReadReport, read_trajectories

    prefix = f"src-{time.monotonic_ns()}"
    a, b, c = f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"
    asyncio.run(
        send(
            kafka.bootstrap,
            topics.TRAJECTORIES,
            [
                (a, codec.encode(trajectory(a, False)), None),
                (b, codec.encode(trajectory(b, True)), None),
                (c, codec.encode(trajectory(c, True)), None),
                (
                    a,
                    codec.encode(trajectory(a, True)),
                    None,
                ),  # a re-verified: the newer record wins
                (c, None, None),  # c deleted
                (f"{prefix}-junk", b"not avro", None),
            ],
        )
    )

    async def read() -> tuple[list[Trajectory], ReadReport]:
        report = ReadReport("kafka")
        return [t async for t in read_trajectories("kafka", report, kafka.bootstrap)], report

    got, report = asyncio.run(read())
    mine = [(t.task_id, t.success) for t in got if t.task_id.startswith(prefix)]
    assert sorted(mine) == [(a, True), (b, True)]
    # the undecodable record is reported with where it is, not dropped silently
    assert any(
        where.startswith(f"{topics.TRAJECTORIES}[") and "not Avro" in why
        for where, why in report.problems
    ), report.problems
