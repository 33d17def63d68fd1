"""Rebalances keep running work (streams/runtime/rebalance.py), on the real broker: a member
joining cancels only the tasks whose partitions moved to it; a task that finishes while its
partition is held is committed only by the member that keeps it, and whichever attempt the
aggregator's assembly keeps, one trajectory comes out; a group scaled 1 -> 3 -> 1 while long
tasks run (real processes, stub LLM latency of seconds) loses and duplicates nothing, and every
task it redid was redone by another member."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from adp.schemas import codec
from adp.schemas.contracts import StepEvent
from adp.streams.aggregator.assembly import TrajectoryAssembler
from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic
from tests.faults.harness import Pipeline
from tests.helpers import AdpProcess, llm_stub_process, wait_for
from tests.test_runtime_discipline import (
    FAST_GROUP,
    PARTITIONS,
    TOPIC,
    Committed,
    GateRuntime,
    ObservedWorker,
    _all_at,
    attempts_of,
    fresh_group,
    gated_tasks,
    kinds,
    produce,
    running,
    until,
)

pytestmark = pytest.mark.kafka


async def steps_of(bootstrap: str, prefix: str) -> tuple[dict[str, list[StepEvent]], list]:
    """Events of the tasks whose key starts with `prefix`, per key in adp.steps order, and all
    of them as (partition, event) in partition order (what the aggregator and replay read)."""
    per_key: dict[str, list[StepEvent]] = defaultdict(list)
    ordered = []
    for r in await read_topic(bootstrap, topics.STEPS):
        if r.key is not None and r.key.decode().startswith(prefix):
            event = codec.decode(r.value, expect=StepEvent)
            per_key[r.key.decode()].append(event)
            ordered.append((r.partition, event))
    return per_key, ordered


# --------------------------------------------------------------------------- in process


async def test_a_task_finished_while_held_is_committed_only_where_its_partition_stays(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "held")
    runtime = GateRuntime()
    tasks = gated_tasks("held", PARTITIONS)
    ids = [t.task_id for t in tasks]
    where = await produce(bootstrap, [(t, p) for p, t in enumerate(tasks)])
    options = {"group_id": group, "consumer_options": FAST_GROUP, "concurrency": PARTITIONS + 2}
    a = ObservedWorker(runtime, "code", bootstrap, runtime_id="worker-A", **options)
    b = ObservedWorker(runtime, "code", bootstrap, runtime_id="worker-B", **options)
    commits_before_hold: list[int] = []
    hold = a.rebalance.hold

    async def hold_then_finish(partitions: set[TopicPartition]) -> None:
        # every running task of A finishes while its partition is held (its finished event is
        # acknowledged before the new assignment is known)
        await hold(partitions)
        if partitions and not commits_before_hold:
            commits_before_hold.append(len(a.commits))
            for i in ids:
                runtime.gates[i].set()
            await until(lambda: not a.inflight, "A's tasks to finish while held")

    a.rebalance.hold = hold_then_finish
    expected = {where[i][0]: where[i][1] + 1 for i in ids}
    async with Committed(bootstrap, group) as committed, running(a) as at:
        await until(lambda: len(runtime.started) == len(ids), "A running every task", workers=(at,))
        async with running(b) as bt:
            await until(
                lambda: _all_at(committed, expected), "every task committed", workers=(at, bt)
            )
            moved = {tp for tp in b.consumer.assignment() if tp.topic == TOPIC}
            kept = {tp for tp in a.consumer.assignment() if tp.topic == TOPIC}
    assert moved and kept and moved | kept == {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}
    assert runtime.cancelled == []  # everything finished; nothing was cancelled
    assert a.revocations == [moved]  # given up: exactly the partitions that moved
    # after the hold began, A committed none of the partitions it lost
    after_hold = a.commits[commits_before_hold[0] :]
    assert not [c for c in after_hold if {tp.partition for tp in moved} & set(c)], after_hold
    assert any(c for c in after_hold if {tp.partition for tp in kept} & set(c))
    events, ordered = await steps_of(bootstrap, ids[0].rsplit("-", 1)[0])
    for i in ids:
        attempts = attempts_of(events[i])
        on_moved = TopicPartition(TOPIC, where[i][0]) in moved
        # a task of a moved partition ran again at B (A's offset was never committed)
        assert [a_[0].runtime_id for a_ in attempts.values()] == (
            ["worker-A", "worker-B"] if on_moved else ["worker-A"]
        )
        assert all(kinds(e) == ["started", "step", "step", "finished"] for e in attempts.values())
    # the aggregator's assembly, fed in partition order as it and replay are: one trajectory
    # per task, A's attempt (the first complete one) every time
    assembler = TrajectoryAssembler()
    out = [t for partition, e in ordered for t in assembler.feed(e, scope=partition)]
    assert sorted(t.task_id for t in out) == sorted(ids)
    assert {t.metadata.runtime_id for t in out} == {"worker-A"}


async def test_a_static_member_restarted_in_time_gets_its_partitions_back(kafka):
    """--instance-id: a member that stops keeps its partitions in the group (aiokafka sends no
    LeaveGroup for a static member) and gets them back when it returns within the session
    timeout; the other member's running tasks are never touched."""
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "static")
    runtime = GateRuntime()
    group_options = {"heartbeat_interval_ms": 300, "session_timeout_ms": 30000}
    options = {"group_id": group, "consumer_options": group_options, "concurrency": 8}
    b = ObservedWorker(runtime, "code", bootstrap, runtime_id="worker-B", **options)

    def static_a() -> ObservedWorker:
        return ObservedWorker(
            runtime, "code", bootstrap, runtime_id="worker-A", instance_id="host-a", **options
        )

    tasks = gated_tasks("static", PARTITIONS)

    def b_owns() -> set[TopicPartition]:
        return b.consumer.assignment()

    async with running(b) as bt:
        a1 = static_a()
        async with running(a1) as at:
            await until(
                lambda: len(b.consumer.assignment()) == len(a1.consumer.assignment()) == 9,
                "the two members to share the partitions",
                workers=(at, bt),
            )
            owned_by_a = set(a1.consumer.assignment())
            await produce(bootstrap, [(t, p) for p, t in enumerate(tasks)])
            await until(lambda: len(runtime.started) == len(tasks), "every task running")
            on_b = [t.task_id for p, t in enumerate(tasks) if TopicPartition(TOPIC, p) in b_owns()]
            for p, t in enumerate(tasks):
                if TopicPartition(TOPIC, p) in owned_by_a:
                    runtime.gates[t.task_id].set()  # A's tasks finish; B's keep running
            await until(lambda: not a1.inflight, "A's tasks to finish", workers=(at,))
        a2 = static_a()
        async with running(a2) as at:
            assert set(a2.consumer.assignment()) == owned_by_a
            assert all(runtime.active[i] == 1 for i in on_b)  # B's tasks ran on throughout
        for i in runtime.started:
            runtime.gates[i].set()
        await until(lambda: not b.inflight, "B's tasks to finish", workers=(bt,))
    assert runtime.cancelled == [] and b.revocations == []
    assert len(runtime.started) == len(tasks) and on_b
    # B's first assignment, A's first join, and nothing for A's restart
    assert len(b.assignments) == 2, b.assignments


async def test_a_drain_that_runs_out_hands_back_uncommitted_and_marks_nothing_running(kafka):
    """On stop, tasks still running when --drain-timeout runs out are cancelled, their offsets
    stay uncommitted (the next owner redoes them) and the last commit says nothing was running
    (stopping is not a crash: no poison strike); a task that finished in time is committed."""
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "drain")
    runtime = GateRuntime()
    done, *stuck = gated_tasks("drain", 3)
    runtime.gates[done.task_id].set()
    where = await produce(bootstrap, [(t, 2) for t in (done, *stuck)])
    worker = ObservedWorker(runtime, "code", bootstrap, concurrency=4, group_id=group)
    stop = asyncio.Event()
    async with Committed(bootstrap, group) as committed:
        run = asyncio.create_task(worker.run(stop, drain_timeout=1, metrics_port=0))
        await until(lambda: len(runtime.started) == 3 and len(worker.inflight) == 2, "3 started")
        stop.set()
        stats = await asyncio.wait_for(run, 60)
        meta = (await committed.raw())[2]
    assert sorted(runtime.cancelled) == sorted(t.task_id for t in stuck)
    assert (stats.handed_back, stats.finished) == (2, 1)
    assert meta.offset == where[stuck[0].task_id][1]  # the first stuck one bounds the commit
    assert json.loads(meta.metadata)["run"] == []


# --------------------------------------------------------------------------- real processes


def joined(runtime: AdpProcess) -> AdpProcess:
    """`runtime` once it got its first partitions (its log says so)."""
    wait_for(
        lambda: "assigned [" in runtime.log_path.read_text(errors="replace"),
        120,
        "the new runtime to join its group",
        check=runtime.assert_alive,
    )
    return runtime


def worked(runtime: AdpProcess) -> AdpProcess:
    """`runtime` once it finished a task."""
    wait_for(
        lambda: "finished success=" in runtime.log_path.read_text(errors="replace"),
        120,
        "the new runtime to finish a task",
        check=runtime.assert_alive,
    )
    return runtime


def worker_stats(log: Path) -> dict[str, int]:
    """The counters of a runtime's final 'stopped: WorkerStats(...)' line."""
    found = re.findall(r"WorkerStats\((.*?)\)$", log.read_text(errors="replace"), re.M)
    assert found, f"{log.name} has no final stats line"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found[-1])}


def test_scaling_1_to_3_to_1_redoes_only_tasks_whose_partitions_moved(kafka, tmp_path):
    # ~6 s per task (two LLM calls of 2.5 s), 4 at a time per runtime: the first one alone
    # needs two minutes for the 80, so every member joins and leaves while most of them wait
    n = 80
    prefix = f"scale13-{uuid.uuid4().hex[:6]}"
    with llm_stub_process(tmp_path / "stub", "--latency", "2.5") as url:
        p = Pipeline(tmp_path, kafka.bootstrap, url, prefix, n)
        p.start_aggregator()
        first = p.start_runtime(concurrency=4)
        try:
            p.produce()
            p.wait_written(2)  # the first runtime is busy
            second = worked(joined(p.start_runtime(concurrency=4)))
            third = worked(joined(p.start_runtime(concurrency=4)))
            assert len(p.written()) < n // 2  # most of the work still ahead
            assert third.stop() == 0 and second.stop() == 0  # drained, left cleanly
            assert first.alive
            p.wait_written(n)
        finally:
            p.stop_all()
    counts = p.verify()  # every task out exactly once, one attempt published per task
    assert counts["files_out"] == n
    events, _ = asyncio.run(steps_of(kafka.bootstrap, prefix))
    stats = {log.name: worker_stats(log) for log in sorted(tmp_path.glob("runtime-*.log"))}
    abandoned = 0
    for key, evs in events.items():
        attempts = list(attempts_of(evs).values())
        for i, attempt in enumerate(attempts):
            if "finished" in kinds(attempt):
                continue
            abandoned += 1
            # cancelled because its partition moved: the next attempt ran on another member
            assert i + 1 < len(attempts), (key, [kinds(a) for a in attempts])
            assert attempts[i + 1][0].runtime_id != attempt[0].runtime_id, (key, stats)
    print(f"SCALE-1-3-1 abandoned attempts {abandoned}, runtimes {stats}")
    assert abandoned == sum(s["cancelled"] for s in stats.values()), stats
    assert sum(s["handed_back"] for s in stats.values()) == 0, stats  # drained in time
    # every member did work; every task a runtime started either finished there or was
    # cancelled because it moved
    for s in stats.values():
        assert s["received"] > 0 and s["received"] == s["finished"] + s["cancelled"], stats
    # the first runtime kept running work through the scale-up
    assert stats["runtime-2.log"]["kept_running"] > 0, stats  # (process 1: the aggregator)
