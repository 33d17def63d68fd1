"""`adp aggregate` on the real broker: step events on adp.steps -> one trajectory file per task,
garbage to adp.dlq, and a kill -9 in the middle loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka import TopicPartition

from adp.core.errors import EXIT_CRASHED
from adp.schemas.codec import decode, encode
from adp.schemas.contracts import StepEvent, Trajectory
from adp.streams.kafka import clients
from adp.streams.kafka.admin import partition_counts
from adp.streams.kafka.topics import DLQ, STEPS, TRAJECTORIES
from tests.helpers import AdpProcess
from tests.test_assembly import T0, attempt_events

pytestmark = pytest.mark.kafka

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T] | T],
    timeout: float,
    what: str,
    proc: AdpProcess | None = None,
) -> T:
    """Poll until `condition` is truthy (fail fast if `proc` died); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.assert_alive()
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f"\n{proc.log()}" if proc else "")
            )
        await asyncio.sleep(0.2)


def aggregator(kafka, tmp_path: Path, out: Path, app_id: str, log: str) -> AdpProcess:
    env = {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_HOME": str(tmp_path / "home")}
    return AdpProcess(
        ["-v", "aggregate", "--out", str(out), "--app-id", app_id, "--session-timeout", "6"],
        tmp_path / log,
        env,
    ).start()


async def produce(bootstrap: str, records: list[StepEvent | tuple[bytes, bytes]]) -> None:
    producer = await clients.start(clients.producer(bootstrap))
    try:
        for r in records:
            key, value = (r.task_id.encode(), encode(r)) if isinstance(r, StepEvent) else r
            await producer.send(STEPS, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def files(out: Path, prefix: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob(f"{prefix}*.json")}


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list], bool], timeout: float = 60
) -> list:
    """All records of `topic` from the beginning, read until `until(records)` holds."""
    consumer = await clients.start(clients.consumer(topic, conf=bootstrap))
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def test_one_file_per_task_duplicates_retries_and_dlq(kafka, tmp_path):
    run = uuid.uuid4().hex[:8]
    prefix = f"agg-{run}-"
    out = tmp_path / "out"
    expected: dict[str, tuple[str, int]] = {}  # task_id -> (winning attempt, steps)
    records: list = []
    for i in range(20):
        tid = f"{prefix}{i:02d}"
        n = i % 4 + 1
        events = attempt_events(tid, n_steps=n, attempt_id=f"{tid}-a", t0=T0 + i)
        if i < 12:  # plain
            records += events
        elif i < 15:  # everything delivered twice, and the task produced twice
            records += events + events[1:] + events
        elif i < 18:  # a dead attempt left a prefix, another runtime redid it
            dead = attempt_events(tid, n_steps=n + 1, attempt_id=f"{tid}-dead", t0=T0 + i)
            retry = attempt_events(tid, n_steps=n, attempt_id=f"{tid}-b", t0=T0 + i + 5)
            records += dead[:2] + retry
            events = retry
        else:  # two attempts both finish, interleaved: the first to complete wins
            second = attempt_events(tid, n_steps=n + 1, attempt_id=f"{tid}-c", t0=T0 + i)
            records += events[:-1] + second + events[-1:]
            events = second
        expected[tid] = (events[0].attempt_id, n if i < 18 else n + 1)
        if i == 5:
            marker = f"garbage-{run}".encode()
            records.append((b"junk", marker))
            bad = events[1].model_copy(update={"step": None})  # decodes, breaks the contract
            records.append((bad.task_id.encode(), encode(bad)))
    proc = aggregator(kafka, tmp_path, out, f"test-agg-{run}", "agg.log")
    try:
        await produce(kafka.bootstrap, records)
        got = await wait_until(
            lambda: len(files(out, prefix)) >= 20 and files(out, prefix),
            120,
            "20 trajectory files",
            proc,
        )
        dlq = await read_topic(
            kafka.bootstrap,
            DLQ,
            lambda rs: sum(prefix.encode() in (r.key or b"") or r.value == marker for r in rs) >= 2,
        )
    finally:
        proc.stop()
    assert sorted(got) == sorted(expected)
    for tid, t in got.items():
        attempt, n = expected[tid]
        assert t["metadata"]["attempt_id"] == attempt, tid
        assert [s["step_id"] for s in t["steps"]] == list(range(1, n + 1)), tid
        Trajectory.model_validate(t)
    mine = [r for r in dlq if r.value == marker or prefix.encode() in (r.key or b"")]
    reasons = {dict(r.headers)["adp-reason"].decode() for r in mine}
    assert any(x.startswith("undecodable StepEvent") for x in reasons), reasons
    assert any(x.startswith("invalid StepEvent: step event without step") for x in reasons)
    for r in mine:
        h = dict(r.headers)
        assert h["adp-source-topic"] == STEPS.encode()
        assert int(h["adp-source-partition"]) in range(6) and int(h["adp-source-offset"]) >= 0
    assert proc.proc.returncode == 0, proc.log()  # SIGTERM: a clean stop
    assert "aggregator stopped" in proc.log(lines=400)


async def committed_past(bootstrap: str, group: str, ends: dict[TopicPartition, int]) -> bool:
    admin = await clients.start(clients.admin(bootstrap))
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return all(
        end == 0 or (tp in offsets and offsets[tp].offset >= end) for tp, end in ends.items()
    )


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = await clients.start(clients.admin(bootstrap))
    try:
        return {tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    partitions = (await partition_counts(bootstrap, [topic]))[topic]
    consumer = await clients.start(clients.consumer(conf=bootstrap))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def test_kill9_mid_way_loses_and_duplicates_nothing(kafka, tmp_path):
    run = uuid.uuid4().hex[:8]
    prefix, app_id, out = f"k9-{run}-", f"test-agg-k9-{run}", tmp_path / "out"
    done = {
        f"{prefix}done-{i}": attempt_events(f"{prefix}done-{i}", n_steps=3, t0=T0 + i)
        for i in range(8)
    }
    half = {
        f"{prefix}half-{i}": attempt_events(f"{prefix}half-{i}", n_steps=3, t0=T0 + i)
        for i in range(8)
    }
    first = aggregator(kafka, tmp_path, out, app_id, "agg1.log")
    try:
        # phase 1: 8 tasks complete, 8 more only started + step 1
        await produce(
            kafka.bootstrap,
            [e for ev in done.values() for e in ev] + [e for ev in half.values() for e in ev[:2]],
        )
        await wait_until(lambda: len(files(out, prefix)) == 8, 120, "8 files", first)
        # the half tasks' state is only in the table: wait until their offsets are committed
        ends = await end_offsets(kafka.bootstrap, STEPS)
        await wait_until(
            lambda: committed_past(kafka.bootstrap, app_id, ends),
            60,
            "offsets committed past phase 1",
            first,
        )
    finally:
        first.kill9()
    assert first.proc.returncode == -9
    # phase 2 while it is down: the rest of the half tasks, and late copies of finished tasks
    late = [e for ev in list(done.values())[:3] for e in ev]
    await produce(kafka.bootstrap, [e for ev in half.values() for e in ev[2:]] + late)
    second = aggregator(kafka, tmp_path, out, app_id, "agg2.log")
    try:
        got = await wait_until(
            lambda: len(files(out, prefix)) >= 16 and files(out, prefix),
            120,
            "16 files after restart",
            second,
        )
        published = await read_topic(
            kafka.bootstrap,
            TRAJECTORIES,
            lambda rs: len({r.key for r in rs if r.key.startswith(prefix.encode())}) >= 16,
        )
        # every event of phase 2 (the late copies last) has been processed and committed
        ends = await end_offsets(kafka.bootstrap, STEPS)
        await wait_until(
            lambda: committed_past(kafka.bootstrap, app_id, ends),
            60,
            "offsets committed past phase 2",
            second,
        )
    finally:
        second.stop()
    assert sorted(got) == sorted([*done, *half])
    for tid, t in got.items():
        events = {**done, **half}[tid]
        assert t["metadata"]["attempt_id"] == events[0].attempt_id
        assert [s["step_id"] for s in t["steps"]] == [1, 2, 3]
    # each task published exactly once: the restarted aggregator recovered the done records
    # and the half tasks' partial state from the changelog
    mine = [r for r in published if r.key.startswith(prefix.encode())]
    assert sorted(r.key.decode() for r in mine) == sorted(got)
    assert {decode(r.value).task_id for r in mine} == set(got)
    log = second.log(lines=2000)
    assert second.proc.returncode == 0, log
    # the restart saw the late copies as late (done records recovered); a rebalance while the
    # dead member's session runs out may replay a few events, hence >=
    stopped = next(line for line in log.splitlines() if "aggregator stopped" in line)
    counters = dict(kv.split("=") for kv in stopped.split("(", 1)[1].rstrip(")").split())
    assert int(counters["late_events_dropped"]) >= len(late), stopped
    assert int(counters["trajectories_published"]) == 8, stopped


async def test_jsonl_sink_flushes_before_offsets_are_committed(kafka, moto, tmp_path):
    """jsonl-hourly buffers lines (here: at most 1000 or 1 hour); the sink agent must flush
    before the trajectories' offsets can be committed, so a kill -9 right after the commit
    loses nothing. Without flush() the lines would still be in the buffer here."""
    from aiobotocore.session import get_session

    run = uuid.uuid4().hex[:8]
    prefix, app_id, bucket = f"s3k-{run}-", f"test-agg-s3-{run}", f"adp-agg-{run}"
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_HOME": str(tmp_path / "home"),
        "ADP_S3_ENDPOINT_URL": moto,
        "ADP_S3_LAYOUT": "jsonl-hourly",
        "ADP_S3_CREATE_BUCKET": "1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = AdpProcess(
        [
            "-v",
            "aggregate",
            "--sink",
            "s3",
            "--out",
            f"s3://{bucket}/lake",
            "--app-id",
            app_id,
            "--session-timeout",
            "6",
        ],
        tmp_path / "agg.log",
        env,
    ).start()
    tasks = {f"{prefix}{i}": attempt_events(f"{prefix}{i}", n_steps=2, t0=T0 + i) for i in range(6)}
    try:
        await produce(kafka.bootstrap, [e for ev in tasks.values() for e in ev])
        await read_topic(
            kafka.bootstrap,
            TRAJECTORIES,
            lambda rs: len({r.key for r in rs if r.key.startswith(prefix.encode())}) >= len(tasks),
        )
        ends = await end_offsets(kafka.bootstrap, TRAJECTORIES)
        await wait_until(
            lambda: committed_past(kafka.bootstrap, app_id, ends),
            60,
            "the sink agent's offsets committed",
            proc,
        )
    finally:
        proc.kill9()
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as s3:
        listing = await s3.list_objects_v2(Bucket=bucket, Prefix="lake/")
        lines = []
        for item in listing.get("Contents", []):
            got = await s3.get_object(Bucket=bucket, Key=item["Key"])
            async with got["Body"] as body:
                lines += (await body.read()).splitlines()
    stored = {json.loads(line)["task_id"] for line in lines}
    assert set(tasks) <= stored, f"lost after the commit: {sorted(set(tasks) - stored)}"


# `adp` with a bug in the file sink: an error that says nothing about the destination
BUGGY_SINK = """
from adp.connectors.sinks.file import FileSink

async def write_batch(self, trajectories):
    raise KeyError("a bug, not an outage")

FileSink.write_batch = write_batch
from adp.app.cli import main
main()
"""


def test_a_crashed_agent_ends_the_process_with_an_error(kafka, tmp_path):
    """A bug in an agent (here the sink's code raises KeyError) must stop the whole process
    with a non-zero status and say why, not leave a process without it, and without committing
    the batch it crashed on: the restarted process must assemble and write it again. An outage
    of the sink (tests/faults/test_sink_outages.py) is not a bug: it pauses the agent instead."""
    run = uuid.uuid4().hex[:8]
    out = tmp_path / "out"
    app_id = f"test-agg-crash-{run}"
    proc = AdpProcess(
        ["-v", "aggregate", "--out", str(out), "--app-id", app_id, "--session-timeout", "6"],
        tmp_path / "agg.log",
        {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_HOME": str(tmp_path / "home")},
        command=[sys.executable, "-c", BUGGY_SINK],
    ).start()
    try:
        from tests.helpers import wait_for

        asyncio.run(produce(kafka.bootstrap, attempt_events(f"crash-{run}", n_steps=1)))
        try:
            wait_for(lambda: not proc.alive, 180, "the aggregator to exit")
        except AssertionError as exc:  # say what it was doing instead
            raise AssertionError(f"{exc}; its log:\n{proc.log(lines=300)}") from None
    finally:
        proc.stop()
    log = proc.log(lines=400)
    assert proc.proc.returncode == EXIT_CRASHED, log  # not 3: that says Kafka is unreachable
    # the assemble agent writes what it publishes (streams/aggregator/writer.py), the sink agent
    # what older tests left on adp.trajectories: whichever writes first crashes
    assert re.search(r"agent (assemble|sink) crashed: KeyError", log), log
    assert "stopping the aggregator" in log and "unavailable" not in log, log
    # not acknowledged: the task's events are read again by the next start
    key = f"crash-{run}".encode()
    steps = asyncio.run(
        read_topic(kafka.bootstrap, STEPS, lambda rs: any(r.key == key for r in rs))
    )
    first = min((r for r in steps if r.key == key), key=lambda r: r.offset)
    committed = asyncio.run(committed_offsets(kafka.bootstrap, app_id))
    assert committed.get(TopicPartition(STEPS, first.partition), 0) <= first.offset, committed


def test_the_sink_agent_skips_only_what_an_aggregator_of_its_app_wrote():
    """A trajectory the assemble agent published carries adp-written-by: <app id>; the sink
    agent of the same app skips it (written already), anything else it writes."""
    from adp.streams.aggregator.writer import WRITTEN_BY, TrajectoryWriter, written_by

    writer = TrajectoryWriter(sink=None, artifacts=None, stats={}, health=None, app_id="app-a")
    assert writer.headers == [(WRITTEN_BY, b"app-a")]
    assert writer.written_by_app(writer.headers)
    assert writer.written_by_app((("other", b"x"), (WRITTEN_BY, b"app-a")))  # aiokafka: tuples
    assert not writer.written_by_app([(WRITTEN_BY, b"app-b")])  # another app: its own sink
    assert not writer.written_by_app(None) and not writer.written_by_app([])  # adp verify's
    assert written_by([(WRITTEN_BY, b"app-b")]) == "app-b" and written_by(None) is None


async def test_a_finished_task_is_remembered_for_forget_done_after_then_runs_again(kafka, tmp_path):
    """--forget-done-after 60: the same task again within the minute (event time) is late and
    leaves the file alone, also after a restart (the done record and its completion time come
    back from the changelog); once another task moved event time past the minute, the record
    is gone and a new copy of the task is written again."""
    run = uuid.uuid4().hex[:8]
    tid, out = f"forget-{run}", tmp_path / "out"
    t1 = T0 + 10_000_000  # after every other test's events: they share the partition
    env = {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_HOME": str(tmp_path / "home")}
    args = [
        "-v",
        "aggregate",
        "--out",
        str(out),
        "--app-id",
        f"test-agg-forget-{run}",
        "--session-timeout",
        "6",
        "--forget-done-after",
        "60",
    ]

    async def to_partition_0(events: list[StepEvent]) -> None:  # one partition: one event time
        producer = await clients.start(clients.producer(kafka.bootstrap))
        try:
            for e in events:
                await producer.send(STEPS, encode(e), key=e.task_id.encode(), partition=0)
            await producer.flush()
        finally:
            await producer.stop()

    def attempt_of(task_id: str) -> str | None:
        path = out / f"{task_id}.json"
        return json.loads(path.read_text())["metadata"]["attempt_id"] if path.exists() else None

    proc = AdpProcess(args, tmp_path / "agg.log", env).start()
    try:
        await to_partition_0(attempt_events(tid, n_steps=2, attempt_id="a1", t0=t1))
        await wait_until(lambda: attempt_of(tid) == "a1", 120, "the first trajectory", proc)
        await to_partition_0(
            attempt_events(tid, n_steps=2, attempt_id="a2", t0=t1 + 20)
            + attempt_events(f"{tid}-m1", n_steps=1, t0=t1 + 25)
        )
        await wait_until(lambda: attempt_of(f"{tid}-m1"), 120, "the marker after the copy", proc)
        assert attempt_of(tid) == "a1"
        proc.stop()
        assert proc.proc.returncode == 0, proc.log()
        proc = AdpProcess(args, tmp_path / "agg2.log", env).start()
        await to_partition_0(
            attempt_events(tid, n_steps=2, attempt_id="a3", t0=t1 + 40)
            + attempt_events(f"{tid}-m2", n_steps=1, t0=t1 + 45)
        )
        await wait_until(lambda: attempt_of(f"{tid}-m2"), 120, "the marker after the restart", proc)
        assert attempt_of(tid) == "a1"  # remembered across the restart
        await to_partition_0(
            attempt_events(f"{tid}-m3", n_steps=1, t0=t1 + 200)
            + attempt_events(tid, n_steps=2, attempt_id="a4", t0=t1 + 210)
        )
        await wait_until(lambda: attempt_of(tid) == "a4", 120, "the copy after the minute", proc)
    finally:
        proc.stop()
    assert proc.proc.returncode == 0, proc.log()
    assert re.search(r"done_forgotten=[1-9]", proc.log(lines=400)), proc.log(lines=400)
