"""Outages of what the factory depends on, on real parts: the aggregator's disk fills up (a
tmpfs) and turns read-only, moto's S3 server is stopped and started again, and (with Toxiproxy
between the processes and the broker) a network partition longer than the session timeouts and
a slow link. Each ends with the same trajectories as a run without the outage: nothing lost,
nothing half-written, no task twice, every process alive and back at work.

One broker for the module, with a second listener behind the proxy (KafkaCluster proxies=):
processes bootstrapped through the proxy talk to Kafka only through it, the test itself talks
to Kafka directly."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from adp.connectors.sinks.base import render
from adp.schemas.codec import decode
from adp.schemas.contracts import Trajectory
from adp.streams.kafka import topics
from adp.streams.kafka.admin import admin_client
from adp.streams.kafka.broker.server import KafkaCluster, free_port_block
from adp.streams.kafka.topics import TRAJECTORIES
from tests.faults.harness import Pipeline
from tests.faults.toxiproxy import Toxiproxy, ToxiproxyUnavailable, binary
from tests.helpers import AdpProcess, MotoServer, llm_stub_process, wait_for
from tests.test_aggregator import produce, read_topic
from tests.test_assembly import T0, attempt_events
from tests.test_metrics_health import get, metric

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_STARTS = "unavailable ("  # streams/aggregator/sink_outage.py: once per outage
OUTAGE_ENDS = "is back after"


@pytest.fixture(scope="module")
def cluster(adp_home: Path) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(
        home=adp_home,
        bootstrap=f"127.0.0.1:{free_port_block()}",
        name="outages",
        proxies=[f"127.0.0.1:{free_port_block()}"],
    )
    try:
        cluster.up(timeout=180)
        yield cluster
    finally:
        cluster.down()


# ---- sinks -----------------------------------------------------------------------------------


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small file system of its own at `where`, to fill up and to make read-only."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the file system has no block left; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def tasks(prefix: str, n: int, t0: float) -> dict[str, list]:
    return {
        f"{prefix}{i:02d}": attempt_events(f"{prefix}{i:02d}", n_steps=3, t0=t0 + i)
        for i in range(n)
    }


def published_once(bootstrap: str, keys: set[str]) -> dict[str, Trajectory]:
    """The trajectories of `keys` on adp.trajectories, each published exactly once."""
    records = asyncio.run(
        read_topic(bootstrap, TRAJECTORIES, lambda rs: keys <= {r.key.decode() for r in rs})
    )
    mine = [r for r in records if r.key.decode() in keys]
    assert len(mine) == len(keys), sorted(r.key.decode() for r in mine)
    return {r.key.decode(): decode(r.value, expect=Trajectory) for r in mine}


def health(port: int) -> dict:
    status, body = get(f"http://127.0.0.1:{port}/health")
    assert status == 200, (status, body)  # degraded is not unhealthy: a restart would not help
    return json.loads(body)


def degraded_by(port: int, words: str) -> bool:
    body = health(port)
    return body["status"] == "degraded" and words in body["degraded"][0]["why"]


def aggregate(
    cluster: KafkaCluster, tmp: Path, args: list[str], env: dict[str, str]
) -> tuple[AdpProcess, int]:
    port = free_port_block()
    proc = AdpProcess(
        [
            "aggregate",
            *args,
            "--app-id",
            f"outage-{uuid.uuid4().hex[:8]}",
            "--metrics-port",
            str(port),
            "--session-timeout",
            "6",
        ],
        tmp / "aggregator.log",
        {"ADP_BOOTSTRAP": cluster.bootstrap, "ADP_HOME": str(tmp / "home"), **env},
    ).start()
    wait_for(
        lambda: get(f"http://127.0.0.1:{port}/health")[0] == 200,
        120,
        "the aggregator",
        check=proc.assert_alive,
    )
    return proc, port


def outage(
    cluster: KafkaCluster, proc: AdpProcess, port: int, batch: dict[str, list], why: str
) -> set[str]:
    """Produce `batch` while the sink is down: /health says degraded because of `why` and the
    process waits (the agent that writes holds its batch: later ones wait behind it)."""
    asyncio.run(produce(cluster.bootstrap, [e for events in batch.values() for e in events]))
    wait_for(
        lambda: degraded_by(port, why), 60, f"/health degraded: {why}", check=proc.assert_alive
    )
    _, text = get(f"http://127.0.0.1:{port}/metrics")
    assert metric(text, "adp_dependency_up", dependency="sink") == 0
    return set(batch)


def recovered(proc: AdpProcess, port: int, outages: int) -> None:
    """/health is ok again, the outage seconds were counted, and each outage was logged once
    when it began and once when it ended (not once per retry)."""
    wait_for(lambda: health(port)["status"] == "ok", 60, "/health ok", check=proc.assert_alive)
    _, text = get(f"http://127.0.0.1:{port}/metrics")
    assert metric(text, "adp_dependency_up", dependency="sink") == 1
    assert metric(text, "adp_outage_seconds_total", dependency="sink") > 0
    log = proc.log(lines=5000)
    assert log.count(OUTAGE_STARTS) == outages and log.count(OUTAGE_ENDS) == outages, log
    assert "crashed" not in log and "Traceback" not in log, log


def test_a_full_disk_then_a_read_only_one_pause_the_file_sink(cluster, tmp_path):
    """The aggregator's folder is on a 4 MB file system: it fills up, then is remounted
    read-only. Each time the trajectories wait (their batch unacknowledged) and are written,
    whole, once the disk is freed or writable again; no temp file is left behind."""
    run = uuid.uuid4().hex[:6]
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "out"
        proc, port = aggregate(cluster, tmp_path, ["--out", str(out)], {})
        try:
            before = tasks(f"disk-{run}-a", 3, T0)
            asyncio.run(produce(cluster.bootstrap, [e for ev in before.values() for e in ev]))
            wait_for(
                lambda: len(list(out.glob(f"disk-{run}-a*.json"))) == 3,
                120,
                "3 files",
                check=proc.assert_alive,
            )

            filler = fill(disk)
            full = outage(
                cluster, proc, port, tasks(f"disk-{run}-b", 10, T0 + 100), "No space left"
            )
            filler.unlink()
            wait_for(
                lambda: all((out / f"{k}.json").exists() for k in full),
                120,
                "the files after space was freed",
                check=proc.assert_alive,
            )

            remount(disk, "ro")
            try:
                frozen = outage(
                    cluster, proc, port, tasks(f"disk-{run}-c", 5, T0 + 200), "Read-only"
                )
            finally:
                remount(disk, "rw")
            wait_for(
                lambda: all((out / f"{k}.json").exists() for k in frozen),
                120,
                "the files after remounting rw",
                check=proc.assert_alive,
            )
            recovered(proc, port, outages=2)
        finally:
            proc.stop()
        assert proc.proc.returncode == 0, proc.log()
        for key, trajectory in published_once(cluster.bootstrap, full | frozen).items():
            assert (out / f"{key}.json").read_bytes() == render(trajectory), key
        assert not list(out.rglob("*.tmp")), "a temp file of a failed write was left behind"


def test_s3_stopped_and_started_again_under_the_s3_sink(cluster, tmp_path):
    """moto's S3 server is stopped under a running aggregator (per-task objects) and started
    again on the same port (empty: moto keeps nothing, so the bucket is made again, as an
    operator restoring a store would): every trajectory of the outage is then stored whole."""
    from aiobotocore.session import get_session

    run = uuid.uuid4().hex[:6]
    bucket = f"outage-{run}"
    moto = MotoServer(free_port_block(), tmp_path / "moto.log").start()
    credentials = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }

    async def s3(*calls: tuple) -> list:
        async with get_session().create_client(
            "s3", endpoint_url=moto.url, **credentials
        ) as client:
            results = []
            for name, kwargs in calls:
                result = await getattr(client, name)(**kwargs)
                if name == "get_object":
                    async with result["Body"] as body:
                        result = await body.read()
                results.append(result)
            return results

    def stored(keys: set[str]) -> dict[str, bytes] | None:
        try:
            listing = asyncio.run(s3(("list_objects_v2", {"Bucket": bucket, "Prefix": "lake/"})))[0]
        except Exception:
            return None
        names = {item["Key"] for item in listing.get("Contents", [])}
        if not {f"lake/{k}.json" for k in keys} <= names:
            return None
        bodies = asyncio.run(
            s3(*(("get_object", {"Bucket": bucket, "Key": f"lake/{k}.json"}) for k in keys))
        )
        return dict(zip(keys, bodies))

    env = {
        "ADP_S3_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        moto.wait_ready()
        asyncio.run(s3(("create_bucket", {"Bucket": bucket})))
        proc, port = aggregate(
            cluster, tmp_path, ["--sink", "s3", "--out", f"s3://{bucket}/lake"], env
        )
        try:
            before = tasks(f"s3-{run}-a", 3, T0 + 300)
            asyncio.run(produce(cluster.bootstrap, [e for ev in before.values() for e in ev]))
            wait_for(lambda: stored(set(before)), 120, "3 objects", check=proc.assert_alive)

            moto.stop()
            down = outage(cluster, proc, port, tasks(f"s3-{run}-b", 8, T0 + 400), "S3")
            moto.start().wait_ready()
            asyncio.run(s3(("create_bucket", {"Bucket": bucket})))
            bodies = wait_for(
                lambda: stored(set(down)),
                120,
                "the objects after S3 came back",
                check=proc.assert_alive,
            )
            recovered(proc, port, outages=1)
        finally:
            proc.stop()
    finally:
        moto.stop()
    assert proc.proc.returncode == 0, proc.log()
    for key, trajectory in published_once(cluster.bootstrap, down).items():
        assert bodies[key] == render(trajectory), key


# ---- network -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toxiproxy(
    cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Toxiproxy]:
    """Toxiproxy in front of the broker's proxied listener: the proxy named "kafka"."""
    try:
        binary()
    except ToxiproxyUnavailable as exc:
        pytest.skip(f"no Toxiproxy: {exc}")
    with Toxiproxy(tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log") as proxy:
        node = cluster.nodes[0]
        proxy.proxy("kafka", node.proxy, f"{node.host}:{node.proxied_port}")
        yield proxy


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stub LLM with a latency per reply, so tasks are in flight when the network fails."""
    with llm_stub_process(tmp_path_factory.mktemp("stub"), "--latency", "0.2") as url:
        yield url


async def members(bootstrap: str, group: str) -> dict[str, int]:
    """client id -> how many partitions it owns, for each member of `group`."""
    async with admin_client(bootstrap) as admin:
        [response] = await admin.describe_consumer_groups([group])
    described = response.to_object()["groups"][0]
    owned = {}
    for member in described["members"]:
        try:
            assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            owned[member["client_id"]] = sum(len(ps) for _, ps in assignment.assignment)
        except Exception:  # mid-rebalance: no assignment yet
            owned[member["client_id"]] = 0
    return owned


def test_a_partition_longer_than_the_session_timeouts(
    cluster, toxiproxy, stub, tmp_path, record_property
):
    """A runtime and the aggregator reach Kafka only through the proxy; it is cut while tasks
    run until both have been dropped from their groups (session timeouts: 10 s and 6 s), then
    healed. The other runtime carries on meanwhile; afterwards both processes are alive and
    back at work, and every task has exactly one trajectory."""
    n = 120
    p = Pipeline(tmp_path, cluster.bootstrap, stub, "partition", n)
    cut_off = cluster.proxied_bootstrap
    p.start_aggregator(cut_off, "--session-timeout", "6")
    island = p.start_runtime(concurrency=4, bootstrap=cut_off)
    p.start_runtime(concurrency=4)
    runtime_group = topics.runtime_group("code")
    try:
        p.produce()
        p.wait_written(n // 4)
        toxiproxy.cut("kafka")
        try:
            wait_for(
                lambda: (
                    island.args[-1] not in asyncio.run(members(cluster.bootstrap, runtime_group))
                    and not asyncio.run(members(cluster.bootstrap, topics.AGGREGATOR_GROUP))
                ),
                120,
                "the cut-off runtime and aggregator to be dropped from their groups",
            )
        finally:
            toxiproxy.heal("kafka")
        # back at work: the cut-off runtime owns partitions again
        wait_for(
            lambda: asyncio.run(members(cluster.bootstrap, runtime_group)).get(island.args[-1]),
            120,
            "the cut-off runtime to own partitions again",
            check=island.assert_alive,
        )
        p.wait_written(n)
        assert island.alive and p.aggregator.alive
    finally:
        p.stop_all()
    p.report(record_property)


def test_a_slow_link_between_the_processes_and_the_broker(
    cluster, toxiproxy, stub, tmp_path, record_property
):
    """300 +- 100 ms each way between the runtime, the aggregator and Kafka, from a quarter of
    the run on: slower, nothing lost, no task twice."""
    n = 40
    p = Pipeline(tmp_path, cluster.bootstrap, stub, "slowlink", n)
    p.start_aggregator(cluster.proxied_bootstrap)
    p.start_runtime(concurrency=4, bootstrap=cluster.proxied_bootstrap)
    try:
        p.produce()
        p.wait_written(n // 4)
        toxiproxy.latency("kafka", 300, jitter=100)
        try:
            p.wait_written(n)
        finally:
            toxiproxy.clear("kafka")
        assert all(r.alive for r in p.runtimes)
    finally:
        p.stop_all()
    p.report(record_property)
