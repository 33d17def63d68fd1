"""--solve K: candidates run K times by the real runtimes before they count as accepted.

Each candidate is produced to its task topic as a task of K samples (through the same publisher as
`adp produce`, so the runtimes of its type run it like any other task), and its K trajectories
are read back from adp.trajectories. It is kept when its pass rate (verified successes / K)
lies within the --pass-rate range: a task always solved or never solved teaches nothing. A
candidate out of range stays what it is, a real run; its passed trajectories are still real
tool output a later generation may grow from (a depth or width extension of an easy task is how
harder ones are made), so the flywheel does not discard them.
"""

from __future__ import annotations

import asyncio
import logging

from adp.schemas.contracts import Task
from adp.streams.producer import TaskPublisher
from adp.streams.synthesis.publish import publish
from adp.streams.synthesis.watch import TrajectoryWatch

log = logging.getLogger(__name__)

NOT_SOLVED_IN_TIME = "no K trajectories within --solve-timeout"


class TrialRunner:
    def __init__(
        self,
        publisher: TaskPublisher,
        watch: TrajectoryWatch,
        samples: int,
        pass_rate: tuple[float, float],
        timeout: float,
        limit: int,
    ) -> None:
        self.publisher, self.watch = publisher, watch
        self.samples, self.pass_rate, self.timeout, self.limit = samples, pass_rate, timeout, limit

    async def run(self, tasks: list[Task]) -> dict[str, float | None]:
        """Produce each task (K samples, confirmed) and wait for its K trajectories: task_id ->
        pass rate, or None when they did not all come back in time."""
        for task in tasks:
            self.watch.expect(task.task_id)  # before producing: no trajectory can slip past
        await publish(self.publisher, tasks, self.limit)
        log.info("%d candidates on trial, %d samples each", len(tasks), self.samples)
        rates = await asyncio.gather(
            *(self.watch.rate(t.task_id, self.samples, self.timeout) for t in tasks)
        )
        return {t.task_id: r for t, r in zip(tasks, rates, strict=True)}

    def judge(self, rate: float | None) -> str | None:
        """Why a pass rate drops its candidate, or None to keep it."""
        if rate is None:
            return NOT_SOLVED_IN_TIME
        low, high = self.pass_rate
        if low <= rate <= high:
            return None
        return f"pass rate outside --pass-rate: {rate:.2f} not in {low:g}:{high:g}"
