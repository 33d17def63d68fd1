"""What a runtime's /health and lag gauges say besides "alive" (`worker` is
streams/runtime/worker.py's RuntimeWorker): whether the broker answers, which partitions it owns,
and how far behind each priority lane is."""

from __future__ import annotations

import asyncio
from typing import Any

from adp.core import metrics


class RuntimeWatch:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.broker_ok: tuple[bool, str] = (True, "")

    def broker_check(self) -> tuple[bool, str]:
        return self.broker_ok

    def assignment_check(self) -> tuple[bool, str]:
        # Members beyond the partition count legitimately get nothing; say so, don't fail.
        consumer = self.worker.consumer
        assigned = consumer.assignment() if consumer else set()
        owned: dict[str, list[int]] = {}
        for tp in sorted(assigned):
            owned.setdefault(tp.topic, []).append(tp.partition)
        self.worker.health.details["partitions"] = owned  # per lane topic
        return True, ""

    async def run(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Ask the broker for end offsets periodically: gives the lag gauge per lane, and tells
        /health whether the broker answers."""
        w = self.worker
        while not stop.is_set():
            try:
                done = {tp: t.committable for tp, t in w.offsets.items()}
                lag = await asyncio.wait_for(w.intake.lag(done), every * 2)
                for lane, behind in lag.items():
                    metrics.CONSUMER_LAG.labels(w.task_type, lane).set(behind)
                w.health.details["lag"] = lag
                self.broker_ok = (True, "")
            except Exception as exc:  # broker down, partitions moving: report, keep going
                self.broker_ok = (False, f"broker not answering: {type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass
