"""Past six consumers on the real broker: the task and step topics grown to 12 partitions with
`adp topics grow`, 8 runtime processes in one group, the aggregator sizing its table from the
broker. Every runtime gets work and every task comes out exactly once. Kept lean for 2 cores:
tiny code tasks, the stub LLM, concurrency 1."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter

import pytest
from aiokafka.partitioner import murmur2

from adp.streams.kafka.admin import admin_client, partition_counts
from adp.streams.kafka.reader import read_topic
from adp.streams.kafka.topics import STEPS, TRAJECTORIES, runtime_group, task_topic
from tests.helpers import ADP, AdpProcess, trajectory_files, wait_for, write_tasks

pytestmark = pytest.mark.kafka

PARTITIONS = 12
RUNTIMES = 8
PER_PARTITION = 2


def partition_of(key: str, partitions: int) -> int:
    """Where the producer's default partitioner puts this key (murmur2, as Kafka's Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def task_ids_covering(partitions: int, per_partition: int) -> list[str]:
    """Task ids that put exactly `per_partition` tasks on every partition."""
    by_partition: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(ids) < per_partition for ids in by_partition.values()):
        task_id = f"scale-{n:04d}"
        ids = by_partition[partition_of(task_id, partitions)]
        if len(ids) < per_partition:
            ids.append(task_id)
        n += 1
    return sorted(t for ids in by_partition.values() for t in ids)


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    async with admin_client(bootstrap) as admin:
        [response] = await admin.describe_consumer_groups([group])
    described = response.to_object()["groups"][0]
    return described.get("state", ""), len(described["members"])


def test_twelve_partitions_eight_runtimes_each_gets_work_every_task_once(kafka, llm_stub, tmp_path):
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(tmp_path / "home"),
    }
    for family in ("tasks", "steps"):
        grown = subprocess.run(
            [*ADP, "topics", "grow", family, "--partitions", str(PARTITIONS)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert grown.returncode == 0, grown.stderr
        assert f"6 -> {PARTITIONS} partitions" in grown.stdout
    counts = asyncio.run(partition_counts(kafka.bootstrap, [task_topic("code"), STEPS]))
    assert counts == {task_topic("code"): PARTITIONS, STEPS: PARTITIONS}

    out = tmp_path / "out"
    aggregator = AdpProcess(
        ["aggregate", "--out", str(out), "--metrics-port", "0"], tmp_path / "agg.log", env
    ).start()
    runtimes = [
        AdpProcess(
            [
                "runtime",
                "code",
                "--concurrency",
                "1",
                "--metrics-port",
                "0",
                "--runtime-id",
                f"scale-rt-{i}",
            ],
            tmp_path / f"rt-{i}.log",
            env,
        ).start()
        for i in range(RUNTIMES)
    ]

    def all_alive() -> None:
        aggregator.assert_alive()
        for rt in runtimes:
            rt.assert_alive()

    try:
        # produce only once all eight share the partitions: none may take all the work early
        wait_for(
            lambda: (
                asyncio.run(group_state(kafka.bootstrap, runtime_group("code")))
                == ("Stable", RUNTIMES)
            ),
            180,
            f"{RUNTIMES} runtimes in a stable group",
            check=all_alive,
            interval=1.0,
        )
        ids = task_ids_covering(PARTITIONS, PER_PARTITION)
        tasks = write_tasks(
            tmp_path / "tasks.jsonl",
            [
                {
                    "task_id": t,
                    "task_type": "code",
                    "description": f"Print {i}.",
                    "max_steps": 3,
                    "timeout": 60,
                }
                for i, t in enumerate(ids)
            ],
        )
        produced = subprocess.run(
            [*ADP, "produce", "--quiet", str(tasks)],
            env={**aggregator.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stderr

        def all_written() -> bool:
            return out.exists() and len(list(out.glob("scale-*.json"))) == len(ids)

        wait_for(all_written, 300, f"{len(ids)} trajectories", check=all_alive)
    finally:
        for rt in runtimes:
            rt.stop()
        aggregator.stop()

    files = trajectory_files(out)
    assert sorted(files) == ids
    assert all(t["success"] for t in files.values())
    workers = Counter(t["metadata"]["runtime_id"] for t in files.values())
    assert set(workers) == {f"scale-rt-{i}" for i in range(RUNTIMES)}, workers

    # exactly once on the wire too: one trajectory record per task
    published = Counter(
        r.key.decode()
        for r in asyncio.run(read_topic(kafka.bootstrap, TRAJECTORIES))
        if r.key.decode().startswith("scale-")
    )
    assert published == Counter({t: 1 for t in ids})
    # the aggregator's table follows adp.steps: its changelog has 12 partitions too
    changelog = "adp-aggregator-assembly-changelog"
    assert asyncio.run(partition_counts(kafka.bootstrap, [changelog])) == {changelog: PARTITIONS}
