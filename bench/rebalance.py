"""Redone work per scale event, measured from what the broker holds: every attempt of a run's
tasks on adp.steps (its start, its last event, whether it finished) and the moments the group
rebalanced (the runtimes' "assigned" log lines). Used by the benchmark's rebalance part."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from adp.schemas import codec
from adp.schemas.contracts import StepEvent
from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic

_ASSIGNED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+rebalance: assigned ", re.M
)


@dataclass
class Attempt:
    task: str
    runtime_id: str
    started: float
    last: float  # its last event's time
    finished: bool


async def attempts_of(bootstrap: str, prefix: str) -> list[Attempt]:
    by_id: dict[str, Attempt] = {}
    for r in await read_topic(bootstrap, topics.STEPS):
        key = r.key.decode() if r.key else ""
        if not key.startswith(prefix):
            continue
        e = codec.decode(r.value, expect=StepEvent)
        a = by_id.setdefault(e.attempt_id, Attempt(key, e.runtime_id, e.timestamp, 0.0, False))
        a.last = max(a.last, e.timestamp)
        a.finished = a.finished or e.event_type == "finished"
    return list(by_id.values())


def rebalances(logs: list[Path], gap: float = 1.0) -> list[float]:
    """When the group rebalanced: the first "assigned" line of each burst (every member hears
    of one rebalance within `gap` seconds), the group's first join left out."""
    times = sorted(
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for log in logs
        for stamp in _ASSIGNED.findall(log.read_text(errors="replace"))
    )
    bursts: list[float] = []
    for t in times:
        if not bursts or t - bursts[-1] > gap:
            bursts.append(t)
    return bursts[1:]


def running_at(attempts: list[Attempt], when: float, moments: list[float]) -> int:
    """Attempts in flight at `when`. One that never finished ended at the first rebalance after
    its last event (that is when it was cancelled)."""
    n = 0
    for a in attempts:
        end = a.last if a.finished else next((m for m in moments if m >= a.last), a.last)
        n += a.started <= when <= end
    return n


def redone(attempts: list[Attempt]) -> int:
    """Attempts beyond one per task: the work a run did twice."""
    return len(attempts) - len({a.task for a in attempts})
