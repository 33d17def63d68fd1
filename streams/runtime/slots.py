"""The tasks a runtime runs right now, by the partition and offset they came from, and the slots
they hold.

A task holds a slot while its agent works; once its finished event is handed to the producer it
only waits for the broker's acknowledgements (`agent_done`) and its slot frees, so a slow broker
round trip never idles the runtime's concurrency. The task stays here until it ends, so a
revocation still finds it to cancel and a drain still waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable

from aiokafka import TopicPartition

from adp.core import metrics


class RunningTasks:
    def __init__(self, task_type: str) -> None:
        self.task_type = task_type
        self.inflight: dict[asyncio.Task, tuple[TopicPartition, int]] = {}
        # tasks whose agent is done and that only wait for their events' acks: no slot
        self.acking: set[asyncio.Task] = set()
        self.freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.inflight)

    def busy(self) -> int:
        """Slots held: tasks whose agent still works."""
        return len(self.inflight) - len(self.acking)

    def start(self, tp: TopicPartition, offset: int, work: Coroutine) -> asyncio.Task:
        metrics.TASKS_IN_FLIGHT.labels(self.task_type).inc()
        task = asyncio.create_task(work, name=f"task@{tp.topic}-{tp.partition}:{offset}")
        self.inflight[task] = (tp, offset)
        task.add_done_callback(self._ended)
        return task

    def agent_done(self) -> None:
        """Called from within a task: its agent is done, only the acks are awaited."""
        self.acking.add(asyncio.current_task())
        self.freed.set()

    def _ended(self, task: asyncio.Task) -> None:
        self.inflight.pop(task, None)
        self.acking.discard(task)
        metrics.TASKS_IN_FLIGHT.labels(self.task_type).dec()
        self.freed.set()

    def on(self, partitions: Iterable[TopicPartition]) -> list[asyncio.Task]:
        wanted = set(partitions)
        return [t for t, (tp, _) in self.inflight.items() if tp in wanted]

    async def cancel(self, tasks: list[asyncio.Task]) -> int:
        """Cancel these tasks and wait until they have ended; returns how many."""
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def wait_for_slot(self, timeout: float, stopping: asyncio.Future) -> None:
        """Until a slot frees, `stopping` is done, or `timeout` seconds passed."""
        self.freed.clear()
        waiter = asyncio.ensure_future(self.freed.wait())
        try:
            await asyncio.wait({waiter, stopping}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()

    async def finish(
        self, timeout: float, poll: Callable[[float], Awaitable[object]] | None = None
    ) -> int:
        """Let the running tasks end within `timeout` seconds, then cancel the rest; returns
        how many were cancelled. `poll(seconds)` waits while keeping the consumer in its group
        (without it the wait is a plain one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inflight and (left := deadline - loop.time()) > 0:
            if poll is not None:
                await poll(min(left, 0.2))
            else:
                await asyncio.wait(set(self.inflight), timeout=left)
        return await self.cancel(list(self.inflight))
