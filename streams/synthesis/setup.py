"""The parts a synthesis run is made of, put together the same way for `adp synthesize SOURCE`
(batch.py) and `adp synthesize kafka --follow` (follow.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from adp.core.settings import Settings
from adp.runtimes.base import Model
from adp.streams.producer import ProduceReport, TaskPublisher, task_limit
from adp.streams.synthesis.accounting import Limits, Report, Spend
from adp.streams.synthesis.dedup import DedupIndex
from adp.streams.synthesis.engine import Decision, Options, Synthesizer, TaskAllowance
from adp.streams.synthesis.model import SynthesisModel
from adp.streams.synthesis.trials import TrialRunner
from adp.streams.synthesis.watch import KnownTasks, TrajectoryWatch


@dataclass(frozen=True)
class Solve:
    """--solve K --pass-rate LOW:HIGH --solve-timeout S"""

    samples: int
    pass_rate: tuple[float, float] = (0.1, 0.9)
    timeout: float = 900.0

    def lineage(self) -> dict:
        return {"samples": self.samples, "pass_rate": list(self.pass_rate)}


@dataclass
class Plan:
    """What a run was asked to do."""

    conf: Settings
    model: Model
    options: Options
    limits: Limits = field(default_factory=Limits)
    near_duplicate: float = 0.8
    concurrency: int = 4
    solve: Solve | None = None
    on_decision: Callable[[Decision], None] | None = None


@dataclass
class Parts:
    """The live parts of a run; `close()` stops the readers and the producer."""

    synthesizer: Synthesizer
    report: Report
    dedup: DedupIndex
    produced: set[str]
    allowance: TaskAllowance
    known: KnownTasks | None = None
    publisher: TaskPublisher | None = None
    watch: TrajectoryWatch | None = None

    async def close(self) -> None:
        for part in (self.known, self.watch):
            if part is not None:
                await part.close()
        if self.publisher is not None:
            await self.publisher.close()


async def assemble(
    plan: Plan, *, kafka: bool, send: bool, follow_topics: bool = False, before_usd: float = 0.0
) -> Parts:
    """The synthesizer with its index, allowance and, as needed, the task topics read (`kafka`),
    a publisher (`send`, or --solve), and the trial watch (--solve)."""
    options = plan.options
    if plan.solve is not None:
        options = Options(**{**options.__dict__, "solve": plan.solve.lineage()})
    options = Options(**{**options.__dict__, "limit": task_limit(plan.conf)})
    report = Report(spend=Spend(plan.limits.budget_usd, before_usd))
    dedup, produced = DedupIndex(plan.near_duplicate), set()
    allowance = TaskAllowance(plan.limits.max_tasks)
    parts = Parts(None, report, dedup, produced, allowance)  # type: ignore[arg-type]
    try:
        if kafka:
            # a flywheel's --max-tasks counts what it made before a restart; a batch run its own
            ours = allowance.note if follow_topics else (lambda _task_id: None)
            parts.known = KnownTasks(plan.conf, dedup, produced, options.synthesizer, ours)
            await parts.known.catch_up(follow=follow_topics)
        if send or plan.solve is not None:
            counts = ProduceReport("adp synthesize", plan.conf.bootstrap)
            parts.publisher = TaskPublisher(plan.conf, counts)
        trials = None
        if plan.solve is not None:
            parts.watch = TrajectoryWatch(plan.conf)
            await parts.watch.start()
            trials = TrialRunner(
                parts.publisher,
                parts.watch,
                plan.solve.samples,
                plan.solve.pass_rate,
                plan.solve.timeout,
                options.limit,
            )
    except BaseException:
        await parts.close()
        raise
    model = SynthesisModel(plan.model, report.spend)
    parts.synthesizer = Synthesizer(
        model, dedup, produced, options, report, allowance, trials, plan.on_decision
    )
    return parts
