"""Waiting time per priority lane: how long tasks waited between their produce and their start.

Measured from what the broker holds, so it works for any run: a task's produce time is its
record's timestamp on its lane topic, its start is the timestamp of its first `started` event on
adp.steps (a redone attempt does not count twice). Used by the load test (--priorities) and the
benchmark.
"""

from __future__ import annotations

import statistics

from adp.schemas import codec
from adp.schemas.contracts import StepEvent
from adp.streams import topics
from adp.streams.reader import read_topic


async def lane_waits(bootstrap: str, task_type: str, prefix: str) -> dict[str, list[float]]:
    """Seconds from produce to first start of each task whose id starts with `prefix`, per lane
    name (highest first). Tasks never started are left out."""
    produced: dict[str, tuple[str, float]] = {}  # task_id -> (lane, produce time)
    for topic in topics.lane_topics(task_type):
        lane = topics.lane_of(topic).name
        for r in await read_topic(bootstrap, topic):
            key = r.key.decode() if r.key else ""
            if key.startswith(prefix):
                produced.setdefault(key, (lane, r.timestamp / 1000))
    started: dict[str, float] = {}
    for r in await read_topic(bootstrap, topics.STEPS):
        key = r.key.decode() if r.key else ""
        if key in produced and key not in started:
            event = codec.decode(r.value, expect=StepEvent)
            if event.event_type == "started":
                started[key] = event.timestamp
    waits: dict[str, list[float]] = {lane.name: [] for lane in topics.LANES}
    for task_id, (lane, at) in produced.items():
        if task_id in started:
            waits[lane].append(max(0.0, started[task_id] - at))
    return waits


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(waits: dict[str, list[float]]) -> list[tuple[str, int, float, float, float]]:
    """(lane, tasks, p50, p95, max) per lane that had tasks, highest lane first."""
    return [(lane, len(w), percentile(w, 50), percentile(w, 95), max(w))
            for lane, w in waits.items() if w]
