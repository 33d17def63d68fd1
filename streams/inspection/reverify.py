"""Judge stored trajectories again and write the new verdicts (the library of `adp verify`).

The spec of each trajectory comes from, in this order: one spec for every trajectory selected,
a task_id -> spec table (trajectories of tasks not in it are left alone), or the spec the
trajectory was verified with (after a verifier was fixed). Only `verification`, `success` and
`claimed_success` change: the steps, the final result and everything else are written back
exactly as they were read.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from adp.connectors.sinks.base import BaseSink
from adp.connectors.sinks.destinations import open_sink
from adp.runtimes.verify import Subject, VerifyContext, verify
from adp.schemas.contracts import Trajectory
from adp.streams.aggregator.build import verified_success
from adp.streams.inspection.trajectories import (
    ReadReport,
    SourceError,
    check_source,
    read_trajectories,
)
from adp.streams.kafka.clients import Conn


@dataclass
class VerifyReport:
    read: ReadReport
    before: Counter = field(default_factory=Counter)
    after: Counter = field(default_factory=Counter)
    changed: int = 0
    written: int = 0
    left_alone: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read.read,
            "skipped": len(self.read.problems),
            "verified": sum(self.after.values()),
            "left_alone": self.left_alone,
            "changed": self.changed,
            "written": self.written,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def reverified(trajectory: Trajectory, verdict: Any) -> Trajectory:
    """The trajectory with a new verdict: nothing else changes."""
    claimed = trajectory.claimed
    return trajectory.model_copy(
        update={
            "verification": verdict,
            "claimed_success": claimed,
            "success": verified_success(claimed, verdict),
        }
    )


def spec_for(
    trajectory: Trajectory, spec: Any, by_task: dict[str, Any] | None, task_type: str | None
) -> tuple[bool, Any]:
    """(selected, spec) for one trajectory."""
    if task_type is not None and trajectory.task_type != task_type:
        return False, None
    if spec is not None:
        return True, spec
    if by_task is not None:
        return (trajectory.task_id in by_task), by_task.get(trajectory.task_id)
    recorded = trajectory.verification.spec if trajectory.verification else None
    if recorded is None and isinstance(trajectory.metadata.task, dict):
        recorded = trajectory.metadata.task.get("verify")
    return True, recorded


async def run_verify(
    source: str,
    destination: str,
    spec: Any,
    by_task: dict[str, Any] | None,
    task_type: str | None,
    ctx: VerifyContext,
    concurrency: int = 4,
    bootstrap: Conn = None,
    progress: Callable[[], None] | None = None,
) -> VerifyReport:
    """Verify the selected trajectories of `source` again, `concurrency` at a time, and write
    each to `destination`; `progress()` is called once per trajectory written."""
    check_source(source)
    sink = await open_sink(destination, conf=bootstrap)
    run = _Reverify(VerifyReport(ReadReport(source)), sink, ctx, concurrency, progress)
    try:
        await run.all(
            read_trajectories(source, run.report.read, bootstrap), spec, by_task, task_type
        )
    finally:
        await sink.close()
    if run.failures:
        raise SourceError(
            f"{len(run.failures)} trajectories could not be written back, first: {run.failures[0]}"
        )
    return run.report


class _Reverify:
    """One re-verification: the report it fills, the sink it writes to, the slots that bound
    how many trajectories are verified at once, and the writes that failed."""

    def __init__(
        self,
        report: VerifyReport,
        sink: BaseSink,
        ctx: VerifyContext,
        concurrency: int,
        progress: Callable[[], None] | None,
    ) -> None:
        self.report = report
        self.sink = sink
        self.ctx = ctx
        self.progress = progress
        self.slots = asyncio.Semaphore(concurrency)
        self.failures: list[BaseException] = []

    async def all(
        self,
        trajectories: AsyncIterator[Trajectory],
        spec: Any,
        by_task: dict[str, Any] | None,
        task_type: str | None,
    ) -> None:
        tasks = []
        async for t in trajectories:
            selected, chosen = spec_for(t, spec, by_task, task_type)
            if not selected:
                self.report.left_alone += 1
                continue
            self.report.before[t.verdict_status] += 1
            await self.slots.acquire()  # bounded: a large source never sits in memory whole
            tasks.append(asyncio.create_task(self.one(t, chosen)))
        await asyncio.gather(*tasks)

    async def one(self, t: Trajectory, chosen: Any) -> None:
        try:
            await self._verify_and_write(t, chosen)
        finally:
            self.slots.release()

    async def _verify_and_write(self, t: Trajectory, chosen: Any) -> None:
        try:
            subject = Subject.of(t, chosen)
        except ValueError as exc:
            self.report.read.skip(t.key, f"cannot rebuild its task: {exc}")
            return
        verdict = await verify(chosen, subject, self.ctx)
        new = reverified(t, verdict)
        self.report.after[verdict.status] += 1
        if (new.verdict_status, new.success) != (t.verdict_status, t.success):
            self.report.changed += 1
        try:
            await self.sink.write(new)
        except Exception as exc:
            self.failures.append(exc)
            return
        self.report.written += 1
        if self.progress:
            self.progress()
