"""What a runtime's /health and lag gauges say besides "alive": whether the broker answers, which
partitions it owns, and how far behind each priority lane is.

The watch sees the worker (streams/runtime/worker.py) only through what it is handed: the
assignment, and a coroutine that measures the lag per lane."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from adp.core import metrics


class RuntimeWatch:
    def __init__(
        self,
        task_type: str,
        health: metrics.Health,
        assignment: Callable[[], set[TopicPartition]],
        lag: Callable[[], Awaitable[dict[str, int]]],
    ) -> None:
        self.task_type, self.health = task_type, health
        self._assignment, self._lag = assignment, lag
        self.broker_ok: tuple[bool, str] = (True, "")

    def broker_check(self) -> tuple[bool, str]:
        return self.broker_ok

    def assignment_check(self) -> tuple[bool, str]:
        # Members beyond the partition count legitimately get nothing; say so, don't fail.
        owned: dict[str, list[int]] = {}
        for tp in sorted(self._assignment()):
            owned.setdefault(tp.topic, []).append(tp.partition)
        self.health.details["partitions"] = owned  # per lane topic
        return True, ""

    async def run(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Ask the broker for end offsets periodically: gives the lag gauge per lane, and tells
        /health whether the broker answers."""
        while not stop.is_set():
            try:
                lag = await asyncio.wait_for(self._lag(), every * 2)
                for lane, behind in lag.items():
                    metrics.CONSUMER_LAG.labels(self.task_type, lane).set(behind)
                self.health.details["lag"] = lag
                self.broker_ok = (True, "")
            except Exception as exc:  # broker down, partitions moving: report, keep going
                self.broker_ok = (False, f"broker not answering: {type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass
