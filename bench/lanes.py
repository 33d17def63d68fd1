"""Waiting time per priority lane: how long tasks waited between their produce and their start.

Measured from what the broker holds, so it works for any run: a task's produce time is its
record's timestamp on its lane topic, its start is the timestamp of its first `started` event on
adp.steps (a redone attempt does not count twice). Used by the load test (--priorities) and the
benchmark's lanes part.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from adp.schemas import codec
from adp.schemas.contracts import StepEvent
from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic


@dataclass(frozen=True)
class Start:
    task_id: str
    lane: str
    produced: float  # unix seconds
    started: float

    @property
    def wait(self) -> float:
        return max(0.0, self.started - self.produced)


async def lane_starts(bootstrap: str, task_type: str, prefix: str) -> list[Start]:
    """Every started task whose id starts with `prefix`, in start order."""
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
    return sorted(
        (Start(t, produced[t][0], produced[t][1], at) for t, at in started.items()),
        key=lambda s: s.started,
    )


async def lane_waits(bootstrap: str, task_type: str, prefix: str) -> dict[str, list[float]]:
    """Seconds from produce to first start per lane name (highest first); tasks never started
    are left out."""
    waits: dict[str, list[float]] = {lane.name: [] for lane in topics.LANES}
    for s in await lane_starts(bootstrap, task_type, prefix):
        waits[s.lane].append(s.wait)
    return waits


def share_while_busy(starts: list[Start], lane: str, above: str) -> tuple[float, int]:
    """`lane`'s share of the starts from the first to the last start of the `above` lane (the
    stretch in which the higher lane had work), and how many starts that stretch holds."""
    marks = [i for i, s in enumerate(starts) if s.lane == above]
    if not marks:
        return 0.0, 0
    stretch = starts[marks[0] : marks[-1] + 1]
    return sum(s.lane == lane for s in stretch) / len(stretch), len(stretch)


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(waits: dict[str, list[float]]) -> list[tuple[str, int, float, float, float]]:
    """(lane, tasks, p50, p95, max) per lane that had tasks, highest lane first."""
    return [
        (lane, len(w), percentile(w, 50), percentile(w, 95), max(w))
        for lane, w in waits.items()
        if w
    ]
