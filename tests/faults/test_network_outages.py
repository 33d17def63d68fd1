"""Network faults between the processes and Kafka, through Toxiproxy: a partition of a runtime
and the aggregator longer than their session timeouts, then healed; a slow link. Each run ends
with every task's one trajectory (tests/faults/harness.py: exact set equality, one attempt per
task) and every process alive and back at work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from adp.streams.kafka import topics
from adp.streams.kafka.admin import admin_client
from adp.streams.kafka.broker.server import KafkaCluster
from tests.faults.harness import Pipeline
from tests.faults.toxiproxy import Toxiproxy, ToxiproxyUnavailable, binary
from tests.helpers import llm_stub_process, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


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
