"""Fault injection: 300+ tasks per scenario on real processes and a real broker; each ends with
exact equality of task_ids in and trajectory files out, contiguous steps, one attempt per task.

Faults fire at moments chosen by progress (a random fraction of trajectories written), not by
sleeping, so the scenarios hit tasks in flight whatever the machine's speed."""

from __future__ import annotations

import random

import pytest

from adp.streams.kafka.broker.server import KafkaCluster
from tests.conftest import free_port_block
from tests.faults.harness import Pipeline
from tests.helpers import llm_stub_process

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N = 300


@pytest.fixture(scope="module")
def slow_stub(tmp_path_factory) -> str:
    """The stub LLM with a small latency per reply, so tasks are in flight when a fault hits."""
    with llm_stub_process(tmp_path_factory.mktemp("stub"), "--latency", "0.05") as url:
        yield url


def _moments(rng: random.Random, count: int) -> list[int]:
    """`count` increasing progress points spread over the run."""
    slices = [(i / count, (i + 1) / count) for i in range(count)]
    return [int(N * rng.uniform(lo + 0.05, hi - 0.1)) for lo, hi in slices]


def test_runtime_kill9_three_times(kafka, slow_stub, tmp_path, record_property):
    rng = random.Random(7)
    p = Pipeline(tmp_path, kafka.bootstrap, slow_stub, "fault-rt", N)
    p.start_aggregator()
    p.start_runtime()
    p.start_runtime()
    try:
        p.produce()
        for moment in _moments(rng, 3):
            p.wait_written(moment)
            victim = rng.choice(p.live_runtimes())
            victim.kill9()
            p.start_runtime()  # back to two processes, as a supervisor would do
        p.wait_written(N)
    finally:
        p.stop_all()
    p.report(record_property)


def test_runtime_kill9_with_every_priority_lane_busy(kafka, slow_stub, tmp_path, record_property):
    """Tasks on all three priority lanes, a runtime killed mid-run: nothing lost or duplicated
    on any lane (lean: fewer tasks, one kill)."""
    n = 60
    p = Pipeline(tmp_path, kafka.bootstrap, slow_stub, "fault-lanes", n, priorities=(1, 5, 10))
    p.start_aggregator()
    p.start_runtime(concurrency=4)
    p.start_runtime(concurrency=4)
    try:
        p.produce()
        p.wait_written(n // 6)  # every lane has tasks running: lower lanes get their share
        p.live_runtimes()[0].kill9()
        p.start_runtime(concurrency=4)
        p.wait_written(n)
    finally:
        p.stop_all()
    p.report(record_property)


def test_runtime_kill9_with_four_samples_per_task(kafka, slow_stub, tmp_path, record_property):
    """k = 4: exactly four trajectories per task (one per sample, keys task_id[/i]) although a
    runtime dies mid-run (lean: 40 tasks, one kill)."""
    n = 40
    p = Pipeline(tmp_path, kafka.bootstrap, slow_stub, "fault-k4", n, samples=4)
    p.start_aggregator()
    p.start_runtime(concurrency=4)
    p.start_runtime(concurrency=4)
    try:
        p.produce()
        p.wait_written(len(p.keys) // 3)
        p.live_runtimes()[0].kill9()
        p.start_runtime(concurrency=4)
        p.wait_written(len(p.keys))
    finally:
        p.stop_all()
    p.report(record_property)


def test_aggregator_kill9_and_restart(kafka, slow_stub, tmp_path, record_property):
    p = Pipeline(tmp_path, kafka.bootstrap, slow_stub, "fault-agg", N)
    p.start_aggregator()
    p.start_runtime()
    try:
        p.produce()
        p.wait_written(N // 3)
        p.aggregator.kill9()
        p.start_aggregator()
        p.wait_written(N)
    finally:
        p.stop_all()
    p.report(record_property)


def test_runtime_scaled_1_to_3_to_1(kafka, slow_stub, tmp_path, record_property):
    p = Pipeline(tmp_path, kafka.bootstrap, slow_stub, "fault-scale", N)
    p.start_aggregator()
    first = p.start_runtime(concurrency=4)
    try:
        p.produce()
        p.wait_written(N // 5)
        extra = [p.start_runtime(concurrency=4), p.start_runtime(concurrency=4)]
        p.wait_written(N // 2)
        for rt in extra:
            rt.stop()  # a clean leave: running tasks finish or are redone elsewhere
        assert first.alive
        p.wait_written(N)
    finally:
        p.stop_all()
    p.report(record_property)


def test_broker_kill9_in_three_node_cluster(adp_home, slow_stub, tmp_path, record_property):
    cluster = KafkaCluster(
        home=adp_home, bootstrap=f"127.0.0.1:{free_port_block(3)}", nodes=3, name="fault-3"
    )
    cluster.up(timeout=240)
    p = Pipeline(tmp_path, cluster.bootstrap, slow_stub, "fault-broker", N)
    try:
        p.start_aggregator()
        p.start_runtime()
        p.start_runtime()
        p.produce()
        p.wait_written(N // 4)
        victim = cluster.nodes[1]
        cluster.stop_node(victim, sig=9)
        p.wait_written(N // 2)
        cluster.start_node(victim)
        p.wait_written(N, timeout=420)
        p.stop_all()
        p.report(record_property)
    finally:
        p.stop_all()
        cluster.down()
