"""The S3 sink against a real S3 HTTP API: moto's server, started here as its own process on
127.0.0.1, reached by aiobotocore over HTTP with dummy credentials. Faults are real too: a
port where the server only starts after the first tries, and an HTTP server that answers
503 SlowDown (alone, or in front of moto for the first requests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from aiohttp import ClientSession, web
from prometheus_client import REGISTRY

from adp.connectors.sinks.base import render
from adp.connectors.sinks.destinations import sink_for
from adp.connectors.sinks.s3 import S3Sink, S3SinkError, parse_destination
from adp.schemas.contracts import LlmExchange, Step, Trajectory, TrajectoryMetadata
from tests.conftest import free_port_block
from tests.helpers import MotoServer

# 2026-03-14 23:59:30 UTC and a minute later (next day), and 2026-03-14 10:15:00 UTC.
LATE = 1773532770.0
NEXT_DAY = LATE + 60
MORNING = 1773483300.0

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def trajectory(
    task_id: str, finished_at: float = LATE, steps: int = 2, result: str = "120"
) -> Trajectory:
    step_list = [
        Step(
            step_id=i,
            action_type="python_executor" if i < steps else "final_answer",
            action_params={"code": "import math\nprint(math.factorial(5))"} if i < steps else {},
            observation="120\n" if i < steps else "",
            thinking=f"step {i}: 计算",
            success=True,
            timestamp=finished_at - 10 + i,
            duration=0.5,
            llm=LlmExchange(
                provider="stub",
                model="scripted",
                request=[{"role": "user", "content": "计算5的阶乘"}],
                response={"content": "ok"},
                prompt_tokens=12,
                completion_tokens=3,
                latency=0.01,
            ),
        )
        for i in range(1, steps + 1)
    ]
    return Trajectory(
        task_id=task_id,
        task_type="code",
        description="计算5的阶乘",
        success=True,
        steps=step_list,
        final_result=result,
        total_duration=10.0,
        metadata=TrajectoryMetadata(
            runtime_id="code-test-1",
            attempt_id=uuid.uuid4().hex,
            started_at=finished_at - 10,
            finished_at=finished_at,
            llm_calls=steps,
            prompt_tokens=12 * steps,
            completion_tokens=3 * steps,
            cached_llm_calls=0,
            task={"task_id": task_id, "task_type": "code", "description": "计算5的阶乘"},
        ),
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    """Dummy credentials; nothing from the developer's own AWS set-up leaks in."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/adp-test-aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/adp-test-aws-credentials")
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "ADP_S3_ENDPOINT_URL",
            "ADP_S3_LAYOUT",
            "ADP_S3_CREATE_BUCKET",
        ):
            mp.delenv(name, raising=False)
        yield


async def _client(endpoint: str):
    return get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
async def bucket(moto: str) -> str:
    name = f"adp-{uuid.uuid4().hex[:12]}"
    async with await _client(moto) as s3:
        await s3.create_bucket(Bucket=name)
    return name


async def _objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    async with await _client(endpoint) as s3:
        listing = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        for item in listing.get("Contents", []):
            got = await s3.get_object(Bucket=bucket, Key=item["Key"])
            async with got["Body"] as body:
                out[item["Key"]] = await body.read()
    return out


def _metric(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("adp_sink_writes_total", {"sink": "s3", "outcome": outcome})
        or 0.0
    )


# ---- per-task ---------------------------------------------------------------------------------


async def test_per_task_objects_are_exactly_render(moto: str, bucket: str) -> None:
    trajs = [trajectory("计算阶乘"), trajectory("fib-10", steps=3, result="55")]
    ok_before = _metric("ok")
    async with S3Sink(f"s3://{bucket}/runs/2026", endpoint_url=moto) as sink:
        urls = [await sink.write(t) for t in trajs]
    assert urls == [
        f"s3://{bucket}/runs/2026/计算阶乘.json",
        f"s3://{bucket}/runs/2026/fib-10.json",
    ]
    objects = await _objects(moto, bucket)
    assert objects == {f"runs/2026/{t.task_id}.json": render(t) for t in trajs}
    assert _metric("ok") - ok_before == 2
    async with await _client(moto) as s3:
        head = await s3.head_object(Bucket=bucket, Key="runs/2026/fib-10.json")
    assert head["ContentType"] == "application/json"


async def test_empty_prefix_and_endpoint_from_env(
    moto: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADP_S3_ENDPOINT_URL", moto)
    sink = sink_for(f"s3://{bucket}", "s3")
    assert isinstance(sink, S3Sink) and sink.layout == "per-task"
    t = trajectory("t-1")
    try:
        assert await sink.write(t) == f"s3://{bucket}/t-1.json"
    finally:
        await sink.close()
    assert await _objects(moto, bucket) == {"t-1.json": render(t)}


async def test_rewriting_the_same_trajectory_is_idempotent(moto: str, bucket: str) -> None:
    t = trajectory("dup-1")
    async with S3Sink(f"s3://{bucket}/out", endpoint_url=moto) as sink:
        await sink.write(t)
        async with await _client(moto) as s3:
            first = (await s3.head_object(Bucket=bucket, Key="out/dup-1.json"))["ETag"]
        await sink.write(t)
        await sink.write(t)
        async with await _client(moto) as s3:
            again = (await s3.head_object(Bucket=bucket, Key="out/dup-1.json"))["ETag"]
    assert first == again
    assert await _objects(moto, bucket) == {"out/dup-1.json": render(t)}


# ---- jsonl-hourly -----------------------------------------------------------------------------


async def test_jsonl_hourly_partitions_by_finished_at_one_line_each(moto: str, bucket: str) -> None:
    late = [trajectory(f"late-{i}", LATE) for i in range(3)]
    next_day = [trajectory("next-day", NEXT_DAY)]
    morning = [trajectory(f"morning-{i}", MORNING) for i in range(2)]
    everything = late + next_day + morning
    sink = S3Sink(
        f"s3://{bucket}/lake", layout="jsonl-hourly", endpoint_url=moto, flush_interval=3600
    )
    for t in everything:
        assert (await sink.write(t)).startswith(f"s3://{bucket}/lake/dt=")
    await sink.write(late[0])  # a redelivery within one batch is one line, not two
    assert sink.buffered == len(everything)
    assert await _objects(moto, bucket) == {}, "buffered lines must not be visible yet"
    await sink.close()

    objects = await _objects(moto, bucket)
    by_partition: dict[str, list[dict]] = {}
    for key, body in objects.items():
        prefix, name = key.rsplit("/", 1)
        assert name.startswith("part-") and name.endswith(".jsonl"), key
        assert body.endswith(b"\n")
        lines = body.decode("utf-8").splitlines()
        for line in lines:  # compact JSON, one trajectory per line
            assert line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))
        by_partition.setdefault(prefix, []).extend(json.loads(line) for line in lines)
    assert sorted(by_partition) == [
        "lake/dt=2026-03-14/hour=10",
        "lake/dt=2026-03-14/hour=23",
        "lake/dt=2026-03-15/hour=00",
    ]
    expect = {t.task_id: json.loads(render(t)) for t in everything}
    seen = [doc["task_id"] for docs in by_partition.values() for doc in docs]
    assert sorted(seen) == sorted(expect), "exactly one line per trajectory"
    for docs in by_partition.values():
        for doc in docs:
            assert doc == expect[doc["task_id"]]
    assert {d["task_id"] for d in by_partition["lake/dt=2026-03-14/hour=23"]} == {
        "late-0",
        "late-1",
        "late-2",
    }


async def test_jsonl_flushes_on_count(moto: str, bucket: str) -> None:
    # the timer cannot fire within the test: only the count decides when a part is written
    sink = S3Sink(
        f"s3://{bucket}/c",
        layout="jsonl-hourly",
        endpoint_url=moto,
        flush_count=2,
        flush_interval=3600,
    )
    try:
        await sink.write(trajectory("a", MORNING))
        assert await _objects(moto, bucket, "c/") == {} and sink.buffered == 1
        await sink.write(trajectory("b", MORNING))  # count reached: flushed within write()
        first = await _objects(moto, bucket, "c/")
        assert len(first) == 1 and sink.buffered == 0
        await sink.write(trajectory("c", MORNING))
        assert await _objects(moto, bucket, "c/") == first and sink.buffered == 1
    finally:
        await sink.close()  # close() flushes the lone line as a second part
    objects = await _objects(moto, bucket)
    assert len(objects) == 2, "every flush is a new object, never an append"
    assert sorted(len(b.splitlines()) for b in objects.values()) == [1, 2]
    assert all(k.startswith("c/dt=2026-03-14/hour=10/part-") for k in objects)


async def test_jsonl_flushes_on_time(moto: str, bucket: str) -> None:
    # the count cannot be reached: only the timer can write the lone line before close()
    sink = S3Sink(
        f"s3://{bucket}/t",
        layout="jsonl-hourly",
        endpoint_url=moto,
        flush_count=1000,
        flush_interval=0.2,
    )
    try:
        await sink.write(trajectory("lone", MORNING))
        deadline = time.monotonic() + 30
        while not await _objects(moto, bucket, "t/"):
            assert time.monotonic() < deadline, "time-based flush did not happen"
            await asyncio.sleep(0.1)
        assert sink.buffered == 0
    finally:
        await sink.close()
    [(key, body)] = (await _objects(moto, bucket, "t/")).items()
    assert key.startswith("t/dt=2026-03-14/hour=10/part-")
    assert [json.loads(line)["task_id"] for line in body.splitlines()] == ["lone"]


# ---- failures ---------------------------------------------------------------------------------


async def test_missing_bucket_fails_fast_with_a_clear_error(moto: str) -> None:
    name = f"adp-missing-{uuid.uuid4().hex[:8]}"
    sink = S3Sink(f"s3://{name}/p", endpoint_url=moto, retries=5, backoff_base=1.0)
    t0 = time.monotonic()
    with pytest.raises(S3SinkError) as err:
        await sink.write(trajectory("x-1"))
    await sink.close()
    assert time.monotonic() - t0 < 5, "a missing bucket is not worth retrying"
    msg = str(err.value)
    assert (
        name in msg and "p/x-1.json" in msg and "does not exist" in msg and "create_bucket" in msg
    )
    assert err.value.bucket == name and err.value.key == "p/x-1.json"


async def test_create_bucket_is_opt_in(moto: str) -> None:
    name = f"adp-new-{uuid.uuid4().hex[:8]}"
    t = trajectory("made-1")
    async with S3Sink(f"s3://{name}/p", endpoint_url=moto, create_bucket=True) as sink:
        await sink.write(t)
        await sink.write(t)
    assert await _objects(moto, name) == {"p/made-1.json": render(t)}


async def test_connection_refused_is_retried_until_the_server_is_up(tmp_path: Path) -> None:
    port = free_port_block()
    late = MotoServer(port, tmp_path / "moto-late.log")
    starter = threading.Timer(1.0, late.start)
    retries_before = _metric("retry")
    sink = S3Sink(
        "s3://adp-late/p",
        endpoint_url=late.url,
        create_bucket=True,
        retries=30,
        backoff_base=0.1,
        backoff_max=0.5,
    )
    t = trajectory("late-1")
    starter.start()
    try:
        assert not _answers(port)
        assert await sink.write(t) == "s3://adp-late/p/late-1.json"
        await sink.close()
        assert _metric("retry") > retries_before
        assert await _objects(late.url, "adp-late") == {"p/late-1.json": render(t)}
    finally:
        starter.cancel()
        starter.join()
        late.stop()


class FaultyS3:
    """A real HTTP server that answers 503 SlowDown to the first `failures` requests and, with
    `upstream`, forwards the rest to it (else keeps failing)."""

    def __init__(self, failures: int, upstream: str | None = None):
        self.failures, self.upstream = failures, upstream
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port_block()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        body = await request.read()
        if len(self.requests) <= self.failures or self.upstream is None:
            return web.Response(status=503, body=SLOWDOWN, content_type="application/xml")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("transfer-encoding", "connection")
        }
        async with (
            ClientSession(auto_decompress=False) as http,
            http.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body
            ) as up,
        ):
            payload = await up.read()
            out = {
                k: v
                for k, v in up.headers.items()
                if k.lower()
                not in ("transfer-encoding", "content-length", "connection", "content-encoding")
            }
            return web.Response(status=up.status, body=payload, headers=out)

    async def __aenter__(self) -> FaultyS3:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_throttling_is_retried_with_backoff(moto: str, bucket: str) -> None:
    t = trajectory("slow-1")
    async with (
        FaultyS3(failures=2, upstream=moto) as faulty,
        S3Sink(f"s3://{bucket}/p", endpoint_url=faulty.url, retries=5, backoff_base=0.05) as sink,
    ):
        assert await sink.write(t) == f"s3://{bucket}/p/slow-1.json"
    assert faulty.requests == [f"PUT /{bucket}/p/slow-1.json"] * 3
    assert await _objects(moto, bucket) == {"p/slow-1.json": render(t)}


async def test_gives_up_after_retries_naming_bucket_and_key() -> None:
    errors_before = _metric("error")
    async with FaultyS3(failures=10**6) as faulty:
        sink = S3Sink(
            "s3://adp-busy/deep/prefix", endpoint_url=faulty.url, retries=3, backoff_base=0.01
        )
        with pytest.raises(S3SinkError) as err:
            await sink.write(trajectory("busy-1"))
        await sink.close()
    assert len(faulty.requests) == 4, "one try plus 3 retries"
    msg = str(err.value)
    assert "s3://adp-busy/deep/prefix/busy-1.json" in msg
    assert "4 attempts" in msg and "SlowDown" in msg and "503" in msg
    assert _metric("error") - errors_before == 1


async def test_failed_jsonl_flush_keeps_the_lines(moto: str, bucket: str) -> None:
    trajs = [trajectory(f"keep-{i}", MORNING) for i in range(3)]
    async with FaultyS3(failures=2, upstream=moto) as faulty:
        sink = S3Sink(
            f"s3://{bucket}/j",
            layout="jsonl-hourly",
            endpoint_url=faulty.url,
            retries=1,
            backoff_base=0.01,
            flush_interval=3600,
        )
        for t in trajs:
            await sink.write(t)
        with pytest.raises(S3SinkError):  # both tries answered 503
            await sink.flush()
        assert sink.buffered == 3, "a failed flush loses nothing"
        keys = await sink.flush()  # the server is back
        await sink.close()
    assert len(keys) == 1 and len(faulty.requests) == 3
    body = (await _objects(moto, bucket))[keys[0]]
    assert sorted(json.loads(x)["task_id"] for x in body.splitlines()) == [
        "keep-0",
        "keep-1",
        "keep-2",
    ]


def test_destinations_and_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_destination("s3://b") == ("b", "")
    assert parse_destination("s3://b/x/y/") == ("b", "x/y")
    for bad in ("b/x", "s3://", "s3:///x", "/tmp/out"):
        with pytest.raises(ValueError):
            parse_destination(bad)
    with pytest.raises(ValueError, match="layout"):
        S3Sink("s3://b/p", layout="parquet")
    assert S3Sink("s3://b/p").layout == "per-task"
    assert S3Sink("s3://b/p").create_bucket is False
    monkeypatch.setenv("ADP_S3_LAYOUT", "jsonl-hourly")
    monkeypatch.setenv("ADP_S3_CREATE_BUCKET", "1")
    sink = sink_for("s3://b/p", "s3")
    assert (sink.layout, sink.create_bucket) == ("jsonl-hourly", True)


async def test_artifacts_land_under_the_task_prefix_in_both_layouts(moto, bucket):
    """Files a step saved are objects beside the trajectory, with their media type, and the
    same names the file sink uses."""
    from adp.schemas.contracts import Artifact

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    art = Artifact(
        name="plots/hist.png",
        size=len(png),
        media_type="image/png",
        sha256=hashlib.sha256(png).hexdigest(),
        kept=True,
    )
    for layout in ("per-task", "jsonl-hourly"):
        sink = S3Sink(f"s3://{bucket}/{layout}", layout=layout, endpoint_url=moto)
        t = trajectory(f"art-{layout}")
        where = await sink.write_artifact(t, 1, art, png)
        await sink.close()
        key = f"{layout}/art-{layout}/step-1/plots/hist.png"
        assert where == f"s3://{bucket}/{key}"
        assert (await _objects(moto, bucket, key))[key] == png
        async with await _client(moto) as s3:
            head = await s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "image/png"
    bad = art.model_copy(update={"name": "../escape.png"})
    with pytest.raises(ValueError, match="not a plain relative path"):
        await S3Sink(f"s3://{bucket}/x", endpoint_url=moto).write_artifact(
            trajectory("t"), 1, bad, png
        )


async def test_a_write_while_a_flush_is_in_flight_is_not_lost(moto, bucket):
    sink = S3Sink(
        f"s3://{bucket}/race",
        layout="jsonl-hourly",
        endpoint_url=moto,
        flush_count=1000,
        flush_interval=3600,
    )
    real_put, entered, release = sink._put, asyncio.Event(), asyncio.Event()

    async def held_put(key: str, body: bytes, content_type: str) -> None:
        entered.set()
        await release.wait()  # the flush's put is in flight until the test lets it go
        await real_put(key, body, content_type)

    sink._put = held_put
    await sink.write(trajectory("a", MORNING))
    flushing = asyncio.create_task(sink.flush())
    await entered.wait()
    await sink.write(trajectory("b", MORNING))  # lands while "a" is being put
    release.set()
    await flushing
    await sink.close()  # flushes "b"
    lines = [
        json.loads(line)["task_id"]
        for body in (await _objects(moto, bucket, "race/")).values()
        for line in body.splitlines()
    ]
    assert sorted(lines) == ["a", "b"]
