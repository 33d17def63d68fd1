"""Outages of the aggregator's sink, on real parts: its disk fills up (a tmpfs) and then turns
read-only; moto's S3 server is stopped and started again. The aggregator waits (its batch
unacknowledged, /health degraded, one log line each way) and then writes every trajectory, whole
and once: the same files as a run without the outage, only later."""

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

from adp.connectors.sinks.base import render
from adp.schemas.codec import decode
from adp.schemas.contracts import Trajectory
from adp.streams.kafka.broker.server import KafkaCluster, free_port_block
from adp.streams.kafka.topics import TRAJECTORIES
from tests.helpers import AdpProcess, MotoServer, wait_for
from tests.test_aggregator import produce, read_topic
from tests.test_assembly import T0, attempt_events
from tests.test_metrics_health import get, metric

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_STARTS = "unavailable ("  # streams/aggregator/sink_outage.py: once per outage
OUTAGE_ENDS = "is back after"


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


def published(bootstrap: str, keys: set[str]) -> dict[str, list[bytes]]:
    """The file bytes of each trajectory of `keys` on adp.trajectories, every time published."""
    records = asyncio.run(
        read_topic(bootstrap, TRAJECTORIES, lambda rs: keys <= {r.key.decode() for r in rs})
    )
    found: dict[str, list[bytes]] = {}
    for r in records:
        if r.key.decode() in keys:
            found.setdefault(r.key.decode(), []).append(render(decode(r.value, expect=Trajectory)))
    return found


def health(port: int) -> dict:
    status, body = get(f"http://127.0.0.1:{port}/health")
    assert status == 200, (status, body)  # degraded is not unhealthy: a restart would not help
    return json.loads(body)


def degraded_by(port: int, words: str) -> bool:
    body = health(port)
    return body["status"] == "degraded" and words in body["degraded"][0]


def aggregate(
    cluster: KafkaCluster,
    tmp: Path,
    args: list[str],
    env: dict[str, str],
    log: str = "aggregator.log",
) -> tuple[AdpProcess, int]:
    """The aggregator of the default app, as the other outage tests run it: it resumes where
    they left adp.steps instead of assembling all of it again."""
    port = free_port_block()
    proc = AdpProcess(
        [
            "aggregate",
            *args,
            "--metrics-port",
            str(port),
            "--session-timeout",
            "6",
            "--drain-timeout",
            "5",
        ],
        tmp / log,
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
    assert metric(text, "adp_sink_unavailable") == 1
    return set(batch)


def written(out: Path, keys: object) -> bool:
    return all((out / f"{key}.json").exists() for key in keys)


def recovered(proc: AdpProcess, port: int, outages: int) -> None:
    """/health is ok again, the outage seconds were counted, and each outage was logged once
    when it began and once when it ended (not once per retry)."""
    wait_for(lambda: health(port)["status"] == "ok", 60, "/health ok", check=proc.assert_alive)
    _, text = get(f"http://127.0.0.1:{port}/metrics")
    assert metric(text, "adp_sink_unavailable") == 0
    assert metric(text, "adp_sink_outage_seconds_total") > 0
    log = proc.log(lines=5000)
    assert log.count(OUTAGE_STARTS) == outages and log.count(OUTAGE_ENDS) == outages, log
    assert "crashed" not in log and "Traceback" not in log, log


def test_a_full_disk_then_a_read_only_one_pause_the_file_sink(cluster, tmp_path):
    """The aggregator's folder is on an 8 MB file system. It fills up: the trajectories wait
    (their batch unacknowledged) and are written, whole, once space is freed. Then it turns
    read-only and the aggregator is stopped meanwhile: it exits without acknowledging what it
    could not write, and the next aggregator writes it once the disk is writable again. No
    temp file is left behind."""
    run = uuid.uuid4().hex[:6]
    with tmpfs(tmp_path / "disk", "8m") as disk:
        out = disk / "out"
        proc, port = aggregate(cluster, tmp_path, ["--out", str(out)], {})
        try:
            before = tasks(f"disk-{run}-a", 3, T0)
            asyncio.run(produce(cluster.bootstrap, [e for ev in before.values() for e in ev]))
            wait_for(lambda: written(out, before), 120, "3 files", check=proc.assert_alive)

            filler = fill(disk)
            full = outage(
                cluster, proc, port, tasks(f"disk-{run}-b", 10, T0 + 100), "No space left"
            )
            filler.unlink()
            wait_for(
                lambda: written(out, full),
                120,
                "files after space was freed",
                check=proc.assert_alive,
            )
            recovered(proc, port, outages=1)

            remount(disk, "ro")
            try:
                frozen = outage(
                    cluster, proc, port, tasks(f"disk-{run}-c", 5, T0 + 200), "Read-only"
                )
                proc.stop()
            finally:
                remount(disk, "rw")
        finally:
            proc.stop()
        log = proc.log(lines=5000)
        assert proc.proc.returncode == 1, log  # stopped with work it could not finish
        assert "stopping while the sink is unavailable" in log, log
        assert log.count(OUTAGE_STARTS) == 2 and log.count(OUTAGE_ENDS) == 1, log
        assert not written(out, frozen)

        again, _ = aggregate(cluster, tmp_path, ["--out", str(out)], {}, "aggregator-2.log")
        try:
            wait_for(
                lambda: written(out, frozen),
                120,
                "files after the restart",
                check=again.assert_alive,
            )
        finally:
            again.stop()
        assert again.proc.returncode == 0, again.log()
        # published once; what the stopped one had published is published again by the next,
        # the same bytes (its events were not acknowledged)
        for key, versions in published(cluster.bootstrap, full | frozen).items():
            assert len(versions) == 1 or (key in frozen and len(set(versions)) == 1), key
            assert (out / f"{key}.json").read_bytes() == versions[0], key
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
    for key, versions in published(cluster.bootstrap, down).items():
        assert versions == [bodies[key]], key  # published once, stored whole
