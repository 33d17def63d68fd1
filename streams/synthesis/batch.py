"""`adp synthesize SOURCE` without --follow: one pass over stored trajectories.

SOURCE is a trajectory folder, s3://bucket/prefix or `kafka` (adp.trajectories read to its end,
no consumer group), as for `adp export`, read by whoever runs this (`read`: a fresh pass over
SOURCE each call; streams/inspection/trajectories.py for the command). A first pass indexes
every description in SOURCE for the duplicate filter; the second synthesizes from each
verified trajectory, several at once (--concurrency), and either produces the accepted tasks
to the task topics (each one confirmed) or, with --out, writes them as tasks.jsonl lines in
SOURCE order for a person to review. When it talks to Kafka anyway (SOURCE kafka, producing,
or --solve) the task topics are read first: their tasks join the duplicate index, and a
candidate whose deterministic id is already there is not produced again, so running the same
command twice produces nothing new.

Stops early on --max-tasks or --budget-usd (saying which); parents not reached are left for a
later run, which finds what this one produced by id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from adp.schemas.contracts import Task, Trajectory
from adp.streams.synthesis import accounting
from adp.streams.synthesis.accounting import BudgetReached, Report
from adp.streams.synthesis.engine import ParentResult
from adp.streams.synthesis.model import ModelUnavailable
from adp.streams.synthesis.publish import publish
from adp.streams.synthesis.setup import Parts, Plan, assemble

log = logging.getLogger(__name__)

LLM_UNAVAILABLE = "the LLM did not answer"


def task_line(task: Task) -> str:
    """A task as a tasks.jsonl line `adp produce` reads back as the same task."""
    doc = task.model_dump(mode="json", exclude={"sample_index"}, exclude_none=True)
    return json.dumps(doc, ensure_ascii=False)


class BatchSynthesis:
    def __init__(
        self,
        read: Callable[[], AsyncIterator[Trajectory]],
        plan: Plan,
        out: Path | None = None,
        progress: Callable[[Report], None] | None = None,
        from_kafka: bool = False,
    ) -> None:
        self.read, self.plan, self.out, self.progress = read, plan, out, progress
        self.from_kafka = from_kafka  # SOURCE is adp.trajectories: the broker is in use anyway
        self.parts: Parts | None = None
        self._done: dict[int, list[Task]] = {}  # sequence -> accepted tasks, until written
        self._next = 0  # the next sequence to write (--out keeps SOURCE order)
        self._file: IO[str] | None = None
        self._stopping = False

    async def run(self) -> Report:
        plan = self.plan
        kafka = self.from_kafka or self.out is None or plan.solve is not None
        self.parts = await assemble(plan, kafka=kafka, send=self.out is None)
        try:
            await self._index_source()
            if self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.out.open("w", encoding="utf-8")
            await self._synthesize_all()

        finally:
            if self._file is not None:
                self._file.close()
            await self.parts.close()
        self.parts.report.stop(accounting.SOURCE_DONE)
        return self.parts.report

    async def _index_source(self) -> None:
        """Every description in SOURCE joins the duplicate index (a first pass)."""
        async for t in self.read():
            self.parts.dedup.add(t.task_id, t.description)

    async def _synthesize_all(self) -> None:
        slots = asyncio.Semaphore(max(1, self.plan.concurrency))
        running: set[asyncio.Task] = set()
        sequence = 0
        async for parent in self.read():
            if self._stopping:
                break
            report = self.parts.report
            report.parents_read += 1
            why = self.parts.synthesizer.skip_reason(parent)
            if why is not None:
                report.parents_skipped[why] += 1
                self._finish(sequence, [])
            else:
                await slots.acquire()
                job = asyncio.create_task(self._one(sequence, parent, slots))
                running.add(job)
                job.add_done_callback(running.discard)
            sequence += 1
            if self.progress:
                self.progress(report)
        if running:
            await asyncio.gather(*running)

    async def _one(self, sequence: int, parent: Trajectory, slots: asyncio.Semaphore) -> None:
        report = self.parts.report
        tasks: list[Task] = []
        try:
            if self._stopping:
                return
            result = await self._synthesize(parent)
            await self._deliver(result)
            tasks = result.tasks + result.trials
            if self.parts.allowance.reached:
                self._stop(accounting.MAX_TASKS, f"{report.accepted_total} tasks accepted")
        finally:
            self._finish(sequence, tasks)
            slots.release()
            if self.progress:
                self.progress(report)

    async def _synthesize(self, parent: Trajectory) -> ParentResult:
        try:
            return await self.parts.synthesizer.synthesize(parent)
        except BudgetReached as exc:
            self._stop(accounting.BUDGET, str(exc))
        except ModelUnavailable as exc:
            self.parts.report.parents_skipped[LLM_UNAVAILABLE] += 1
            log.warning("%s: left for a later run: %s", parent.key, exc)
        return ParentResult()

    async def _deliver(self, result: ParentResult) -> None:
        """Produce the accepted tasks (each confirmed); trials are on the topics already."""
        if self.out is not None or not result.tasks:
            return
        limit = self.parts.synthesizer.options.limit
        sent = await publish(self.parts.publisher, result.tasks, limit)  # not `+= await`: the
        self.parts.report.produced += sent  # count would be read before, and lose concurrent adds
        self.parts.produced.update(t.task_id for t in result.tasks)

    def _finish(self, sequence: int, tasks: list[Task]) -> None:
        """--out: write each parent's tasks once every earlier parent's are written."""
        if self._file is None:
            return
        self._done[sequence] = tasks
        while self._next in self._done:
            for task in self._done.pop(self._next):
                self._file.write(task_line(task) + "\n")
                self.parts.report.written += 1
            self._next += 1
        self._file.flush()

    def _stop(self, reason: str, detail: str) -> None:
        if not self._stopping:
            log.info("stopping: %s (%s)", reason, detail)
        self._stopping = True
        self.parts.report.stop(reason, detail)
