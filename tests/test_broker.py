"""`adp kafka up|down|status` on a real broker: idempotent, topics laid out as the design says,
and nothing left running after `down`."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from adp.streams.kafka import clients
from adp.streams.kafka.broker.server import new_cluster_id
from adp.streams.kafka.topics import platform_topics
from tests.conftest import free_port_block
from tests.helpers import ADP


def test_cluster_ids_are_valid_and_never_look_like_an_option():
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


async def describe(bootstrap: str) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = await clients.start(clients.admin(bootstrap))
    try:
        names = [s.name for s in platform_topics()]
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
        configs = {}
        for response in responses:
            for resource in response.resources:  # (error, msg, type, name, [entries...])
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
        return partitions, configs
    finally:
        await admin.close()


def broker_pids(home: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and str(home).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def test_kafka_up_status_down_are_idempotent_and_leave_nothing_running(tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ, ADP_HOME=str(home), ADP_BOOTSTRAP=f"127.0.0.1:{free_port_block()}")

    def adp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*ADP, "kafka", *args], env=env, capture_output=True, text=True, timeout=300
        )

    try:
        first = adp("up")
        assert first.returncode == 0 and "started" in first.stdout, first.stderr
        again = adp("up")
        assert again.returncode == 0 and "already running" in again.stdout, again.stderr
        assert adp("status").returncode == 0
        assert len(broker_pids(home)) == 1
        assert (home / "kafka" / "default" / "node-0" / "server.log").stat().st_size > 0

        partitions, configs = asyncio.run(describe(env["ADP_BOOTSTRAP"]))
        for spec in platform_topics():
            assert partitions[spec.name] == spec.partitions
        assert partitions["adp.tasks.code"] == 6 and partitions["adp.steps"] == 6
        assert configs["adp.trajectories"]["cleanup.policy"] == "compact"
        assert configs["adp.steps"]["cleanup.policy"] == "delete"
    finally:
        down = adp("down")
    assert down.returncode == 0
    assert broker_pids(home) == []  # no process left behind
    stopped = adp("status")
    assert stopped.returncode == 3 and "no" in stopped.stdout
    assert adp("down").returncode == 0  # stopping a stopped broker is fine
    # data survives: the next `up` starts the same cluster again
    assert adp("up").returncode == 0
    assert adp("down").returncode == 0
