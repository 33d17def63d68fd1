"""`adp replay` on the real broker, beside a real running pipeline (adp aggregate, adp runtime
code with the stub LLM, adp produce, all as processes): rebuilt files are byte-identical to the
live aggregator's, the live aggregator's group is untouched and it keeps working; re-sinking
adp.trajectories and replaying to S3 (moto's server) give the same bytes; a time window uses only
its own events."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from aiokafka import TopicPartition

from adp.schemas import codec
from adp.schemas.contracts import Finish, Step, StepEvent, Task
from adp.streams.kafka import clients, topics
from tests.conftest import free_port_block
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks

pytestmark = pytest.mark.kafka

AGGREGATOR_GROUP = "adp-aggregator"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/adp-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/adp-test-aws-credentials",
}


# ---- the running pipeline -----------------------------------------------------------------------


@dataclass
class Pipeline:
    bootstrap: str
    out: Path
    env: dict[str, str]
    workdir: Path
    aggregator: AdpProcess
    runtime: AdpProcess
    batches: int = 0

    def check(self) -> None:
        self.aggregator.assert_alive()
        self.runtime.assert_alive()

    def run_batch(self, n: int, prefix: str) -> list[str]:
        """Produce n code tasks and wait until the live aggregator has written all of them."""
        self.batches += 1
        ids = [f"{prefix}-{i:02d}" for i in range(n)]
        tasks = write_tasks(
            self.workdir / f"tasks-{self.batches}.jsonl",
            [
                {
                    "task_id": t,
                    "task_type": "code",
                    "description": f"Print the number {i} squared.",
                    "max_steps": 4,
                    "timeout": 60,
                }
                for i, t in enumerate(ids)
            ],
        )
        produced = subprocess.run(
            [*ADP, "produce", "--quiet", str(tasks)],
            env=self.aggregator.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr
        wait_for(
            lambda: all((self.out / f"{t}.json").exists() for t in ids),
            240,
            f"{n} trajectory files of {prefix}",
            check=self.check,
        )
        return ids

    def files(self) -> dict[str, bytes]:
        return read_folder(self.out)


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.json")} if folder.exists() else {}


@pytest.fixture(scope="module")
def pipeline(kafka, llm_stub, tmp_path_factory) -> Pipeline:
    work = tmp_path_factory.mktemp("replay")
    out = work / "A"
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(work / "home"),
        "ADP_METRICS_PORT": "0",
    }
    aggregator = AdpProcess(["aggregate", "--out", str(out)], work / "agg.log", env).start()
    runtime = AdpProcess(["runtime", "code", "--concurrency", "4"], work / "rt.log", env).start()
    p = Pipeline(kafka.bootstrap, out, env, work, aggregator, runtime)
    try:
        p.run_batch(15, "first")
        yield p
    finally:
        runtime.stop()
        aggregator.stop()


def replay(
    p: Pipeline, *args: str, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*ADP, "replay", *args],
        env={**p.aggregator.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
    return done


def summary_of(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# ---- broker-side observations -------------------------------------------------------------------


async def _ends(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    [described] = await _admin(bootstrap, lambda a: a.describe_topics([topic]))
    parts = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = await clients.start(clients.consumer(conf=bootstrap))
    try:
        return {
            (tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(parts)).items()
        }
    finally:
        await consumer.stop()


async def _admin(bootstrap: str, op):
    admin = await clients.start(clients.admin(bootstrap))
    try:
        return await op(admin)
    finally:
        await admin.close()


def committed(bootstrap: str) -> dict[tuple[str, int], int]:
    """The aggregator group's committed offsets on adp.steps and adp.trajectories."""
    offsets = asyncio.run(
        _admin(bootstrap, lambda a: a.list_consumer_group_offsets(AGGREGATOR_GROUP))
    )
    return {
        (tp.topic, tp.partition): m.offset
        for tp, m in offsets.items()
        if tp.topic in (topics.STEPS, topics.TRAJECTORIES)
    }


def groups(bootstrap: str) -> set[str]:
    return {g[0] for g in asyncio.run(_admin(bootstrap, lambda a: a.list_consumer_groups()))}


def aggregator_caught_up(bootstrap: str) -> dict[tuple[str, int], int] | None:
    """The committed offsets once they reach the end of adp.steps and adp.trajectories."""
    ends = {
        **asyncio.run(_ends(bootstrap, topics.STEPS)),
        **asyncio.run(_ends(bootstrap, topics.TRAJECTORIES)),
    }
    got = committed(bootstrap)
    if all(got.get(tp, 0) == end for tp, end in ends.items()):
        return got
    return None


# ---- tests --------------------------------------------------------------------------------------


def test_replay_from_steps_is_byte_identical_and_leaves_the_aggregator_alone(pipeline, tmp_path):
    a = pipeline.files()
    assert len(a) == 15
    before = wait_for(
        lambda: aggregator_caught_up(pipeline.bootstrap),
        120,
        "the aggregator's commits to reach the end of its topics",
        check=pipeline.check,
    )
    groups_before = groups(pipeline.bootstrap)

    b = tmp_path / "B"
    summary = summary_of(replay(pipeline, "--out", str(b), "--json"))  # aggregator still runs

    assert read_folder(b) == a  # same names, same bytes
    assert summary["trajectories_written"] == 15 and summary["task_ids"] == 15
    assert summary["assembler"]["completed"] == 15
    assert summary["incomplete_attempts"] == 0
    assert summary["records_read"] == summary["total_in_range"] == summary["assembler"]["events"]
    # 15 tasks x (started, 2 steps, finished), nothing duplicated on this clean run
    assert summary["assembler"]["events"] >= 15 * 4
    # the partitions shared by two processes: the same files, the same counts
    b2 = tmp_path / "B2"
    split = summary_of(replay(pipeline, "--out", str(b2), "--json", "--workers", "2"))
    assert read_folder(b2) == a
    assert split["workers"] == 2 and summary["workers"] == 1
    same = (
        "records_read",
        "total_in_range",
        "trajectories_written",
        "task_ids",
        "assembler",
        "incomplete_attempts",
        "undecodable",
        "invalid",
    )
    assert {k: split[k] for k in same} == {k: summary[k] for k in same}
    # no group was created, the aggregator's offsets did not move
    assert groups(pipeline.bootstrap) == groups_before
    assert committed(pipeline.bootstrap) == before

    # the live aggregator keeps working; replay's destination is left alone
    more = pipeline.run_batch(2, "after-replay")
    a2 = pipeline.files()
    assert {f"{t}.json" for t in more} <= set(a2) and len(a2) == 17
    assert read_folder(b) == a


def test_replay_of_published_trajectories_is_byte_identical(pipeline, tmp_path):
    a = pipeline.files()
    c = tmp_path / "C"
    summary = summary_of(replay(pipeline, "--source", "trajectories", "--out", str(c), "--json"))
    assert read_folder(c) == a
    assert summary["source"] == topics.TRAJECTORIES and summary["task_ids"] == len(a)
    assert summary["assembler"] == {}
    c3 = tmp_path / "C3"
    split = summary_of(
        replay(pipeline, "--source", "trajectories", "--out", str(c3), "--json", "--workers", "3")
    )
    assert read_folder(c3) == a and split["workers"] == 3 and split["task_ids"] == len(a)


async def _s3(endpoint: str, op):
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as s3:
        return await op(s3)


async def _objects(s3, bucket: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    listing = await s3.list_objects_v2(Bucket=bucket)
    for item in listing.get("Contents", []):
        got = await s3.get_object(Bucket=bucket, Key=item["Key"])
        async with got["Body"] as body:
            out[item["Key"]] = await body.read()
    return out


def test_replay_to_s3_gives_the_same_bytes(pipeline, moto):
    bucket = f"adp-replay-{uuid.uuid4().hex[:8]}"
    asyncio.run(_s3(moto, lambda s3: s3.create_bucket(Bucket=bucket)))
    env = {**AWS, "ADP_S3_ENDPOINT_URL": moto}
    a = pipeline.files()
    summary = summary_of(replay(pipeline, "--out", f"s3://{bucket}/rebuilt/v1", "--json", env=env))
    objects = asyncio.run(_s3(moto, lambda s3: _objects(s3, bucket)))
    assert objects == {f"rebuilt/v1/{name}": data for name, data in a.items()}
    assert summary["trajectories_written"] == len(a)

    # a bucket that does not exist: one clear line, before anything is read
    missing = replay(pipeline, "--out", f"s3://no-such-{bucket}/x", env=env, ok=False)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_since_and_until_use_only_their_window(pipeline, tmp_path):
    everything_before = pipeline.files()  # all written: their events' timestamps are older
    boundary = time.time()
    later = pipeline.run_batch(3, "window")
    a = pipeline.files()

    d = tmp_path / "D"
    summary = summary_of(replay(pipeline, "--since", iso(boundary), "--out", str(d), "--json"))
    assert set(read_folder(d)) == {f"{t}.json" for t in later}  # nothing from before
    assert read_folder(d) == {f"{t}.json": a[f"{t}.json"] for t in later}
    assert summary["assembler"]["completed"] == 3 and summary["incomplete_attempts"] == 0
    assert summary["assembler"]["late_events_dropped"] == 0

    e = tmp_path / "E"
    summary = summary_of(replay(pipeline, "--until", iso(boundary), "--out", str(e), "--json"))
    assert read_folder(e) == everything_before
    assert summary["outside_window"] >= 3 * 4  # the window batch's events, read and skipped
    assert summary["incomplete_attempts"] == 0


def _event(task_id: str, kind: str, when: float, step_count: int = 1) -> StepEvent:
    fields: dict = {}
    if kind == "started":
        fields["task"] = Task(task_id=task_id, task_type="code", description="synthetic")
    elif kind == "step":
        fields["step"] = Step(
            step_id=1,
            action_type="final_answer",
            action_params={},
            observation="",
            thinking="done",
            success=True,
            timestamp=when,
            duration=0.1,
        )
    else:
        fields["finish"] = Finish(
            success=True, final_result="42", total_duration=0.2, step_count=step_count
        )
    return StepEvent(
        event_type=kind,
        task_id=task_id,
        attempt_id=f"{task_id}-a1",
        task_type="code",
        runtime_id="code-synthetic",
        timestamp=when,
        **fields,
    )


async def _send(bootstrap: str, items: list[tuple[StepEvent, int]]) -> None:
    producer = await clients.start(clients.producer(bootstrap))
    try:
        for e, ts_ms in items:
            await producer.send_and_wait(
                topics.STEPS, codec.encode(e), key=e.task_id.encode(), timestamp_ms=ts_ms
            )
    finally:
        await producer.stop()


def test_a_task_straddling_the_window_start_is_incomplete_and_not_written(pipeline, tmp_path):
    boundary = time.time()
    inside_ms = int(boundary * 1000) + 1000
    before_ms = int(boundary * 1000) - 60_000
    now = time.time()
    # straddle: its started record carries a create time before the window, and (create times
    # are not monotonic) it sits after the first in-window record of its partition
    asyncio.run(
        _send(
            pipeline.bootstrap,
            [
                (_event("straddle-1", "step", now), inside_ms),
                (_event("straddle-1", "started", now), before_ms),
                (_event("straddle-1", "finished", now), inside_ms),
                (_event("inside-1", "started", now), inside_ms),
                (_event("inside-1", "step", now), inside_ms),
                (_event("inside-1", "finished", now), inside_ms),
            ],
        )
    )
    # the live aggregator sees all of both tasks
    wait_for(
        lambda: all((pipeline.out / f"{t}.json").exists() for t in ("straddle-1", "inside-1")),
        120,
        "the synthetic tasks' files",
        check=pipeline.check,
    )

    f = tmp_path / "F"
    summary = summary_of(replay(pipeline, "--since", iso(boundary), "--out", str(f), "--json"))
    assert read_folder(f) == {"inside-1.json": (pipeline.out / "inside-1.json").read_bytes()}
    assert summary["outside_window"] == 1
    assert summary["incomplete_attempts"] == 1  # straddle-1: counted, not written
    assert summary["assembler"]["completed"] == 1


def test_progress_bar_on_a_terminal(pipeline, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*ADP, "replay", "--out", str(tmp_path / "G")],
        env=pipeline.aggregator.env,
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    stdout = proc.stdout.read().decode()
    assert proc.wait(timeout=120) == 0, shown.decode(errors="replace") + stdout
    screen = shown.decode(errors="replace")
    assert "replay" in screen and "events" in screen and "100%" in screen
    assert "trajectories written" in stdout and "incomplete" in stdout
    assert read_folder(tmp_path / "G") == pipeline.files()


def test_errors_are_one_clear_line(tmp_path):
    port = free_port_block()
    unreachable = subprocess.run(
        [*ADP, "replay", "--bootstrap", f"127.0.0.1:{port}", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreachable.returncode == 3  # every command: 3 = Kafka unreachable or refused
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr

    (tmp_path / "a-file").write_text("")
    for bad, why in [
        (str(tmp_path / "a-file" / "sub"), "cannot create the folder"),
        ("s3://", "no bucket"),
        ("ftp://host/x", "bad destination"),
    ]:
        done = subprocess.run(
            [*ADP, "replay", "--bootstrap", f"127.0.0.1:{port}", "--out", bad],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1 and why in done.stderr, (bad, done.stderr)
        assert "Traceback" not in done.stderr
