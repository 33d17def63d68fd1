"""One parent trajectory in, its accepted synthesized tasks out: the synthesizer's core.

For a verified parent: ask the model for a proposal grounded in what the parent's tools
returned, build the candidates (streams/synthesis/candidates.py), then filter each one, counting
every drop in the report:
  already produced    an earlier run that died before it committed produced this very id:
                      not produced again (counted as resumed);
  duplicates          exact or near duplicates of a task already produced or accepted
                      (streams/synthesis/dedup.py);
  tool necessity      the model answers the question without tools and its answer passes the
                      candidate's own verify spec: the task teaches nothing about tools (the
                      raw exchange is kept in the decision);
  --max-tasks         what the limit leaves out stays for a later run (the parent is then
                      not finished);
  --solve K           the runtimes run it K times (streams/synthesis/trials.py) and it is kept
                      only when its pass rate lies within --pass-rate.
Atomic candidates are decided first: depth and width candidates build only on accepted ones.
Broker-free: producing, writing and committing are the caller's (batch.py, follow.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adp.runtimes.verify import Subject, VerifyContext
from adp.runtimes.verify.answer import AnswerVerifier
from adp.schemas import lineage as schema
from adp.schemas.contracts import Task, Trajectory
from adp.streams.synthesis.accounting import Report
from adp.streams.synthesis.candidates import Candidate, CandidateBuilder, Turned
from adp.streams.synthesis.dedup import DedupIndex
from adp.streams.synthesis.grounding import observations, observed_values
from adp.streams.synthesis.model import SynthesisModel
from adp.streams.synthesis.proposals import (
    NO_JSON,
    check_messages,
    final_answer,
    parse_proposal,
    proposal_messages,
)

# why a parent is not used
NOT_VERIFIED = "not verified"
FAILED = "did not pass its verifier"
AT_MAX_GENERATION = "at --max-generations"
NO_TOOL_OUTPUT = "no tool output"
# why a candidate is dropped here (candidates.py has the others)
TOOL_FREE = "answered without tools"
LEFT_FOR_LATER = "left for a later run (--max-tasks)"
TOO_LARGE = "too large with its lineage"


@dataclass(frozen=True)
class Options:
    per_method: int = 3  # proposals of each method asked for and considered per parent
    methods: tuple[str, ...] = schema.METHODS
    include_unverified: bool = False
    max_generations: int | None = None
    synthesizer: str = "batch"  # the consumer group, or "batch"
    solve: dict[str, Any] | None = None  # {"samples": k, "pass_rate": [low, high]}
    limit: int = 30 * 1024 * 1024  # bytes a task may be


@dataclass
class Decision:
    """What became of one candidate (adp synthesize --report writes one line each)."""

    task_id: str
    method: str
    generation: int
    parent: str
    question: str
    outcome: str  # accepted | resumed | dropped
    reason: str = ""
    exchanges: list[dict] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ParentResult:
    tasks: list[Task] = field(default_factory=list)  # accepted: to produce or write
    trials: list[Task] = field(default_factory=list)  # accepted after their trial: produced
    cut: bool = False  # --max-tasks left some of its candidates for a later run


class TaskAllowance:
    """--max-tasks: which task ids count. Ids already counted (known on the task topics from
    an earlier run of the same synthesizer) are granted again for free."""

    def __init__(self, max_tasks: int | None) -> None:
        self.max_tasks = max_tasks
        self.counted: set[str] = set()

    @property
    def reached(self) -> bool:
        return self.max_tasks is not None and len(self.counted) >= self.max_tasks

    def note(self, task_id: str) -> None:
        self.counted.add(task_id)

    def take(self, ids: list[str]) -> list[str]:
        granted = []
        for task_id in ids:
            if task_id in self.counted or not self.reached:
                self.counted.add(task_id)
                granted.append(task_id)
        return granted


class Synthesizer:
    def __init__(
        self,
        model: SynthesisModel,
        dedup: DedupIndex,
        produced: set[str],
        options: Options,
        report: Report,
        allowance: TaskAllowance,
        trials: Any = None,  # a TrialRunner with --solve
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.model, self.dedup, self.produced = model, dedup, produced
        self.options, self.report, self.allowance = options, report, allowance
        self.trials, self.on_decision = trials, on_decision

    def skip_reason(self, parent: Trajectory) -> str | None:
        """Why `parent` is not used, or None."""
        status = parent.verdict_status
        if status == "failed" or (status != "passed" and not parent.claimed):
            return FAILED
        if status != "passed" and not self.options.include_unverified:
            return NOT_VERIFIED
        limit = self.options.max_generations
        if limit is not None and schema.generation_of(parent) >= limit:
            return AT_MAX_GENERATION
        return None

    async def synthesize(self, parent: Trajectory) -> ParentResult:
        """The accepted tasks of one parent (raises BudgetReached, ModelUnavailable). A parent
        that does not finish leaves no reservation behind in the duplicate index: done again,
        its candidates are judged as the first time."""
        reserved: list[str] = []
        try:
            return await self._synthesize(parent, reserved)
        except BaseException:
            for task_id in reserved:
                if task_id not in self.produced:
                    self.dedup.remove(task_id)
            raise

    async def _synthesize(self, parent: Trajectory, reserved: list[str]) -> ParentResult:
        seen = observations(parent)
        if not seen:
            self.report.parents_skipped[NO_TOOL_OUTPUT] += 1
            return ParentResult()
        builder = CandidateBuilder(
            parent, seen, self.options.synthesizer, self.options.solve, self.options.limit
        )
        messages = proposal_messages(parent, seen, observed_values(seen), self.options.per_method)
        answer = await self.model.ask(messages)
        self.report.parents_used += 1
        proposal = parse_proposal(answer.text)
        for problem in proposal.problems:
            unreadable = "unreadable proposal" if problem == NO_JSON else "unreadable proposal item"
            self.report.dropped[unreadable] += 1
        first = [answer.exchange]
        n = self.options.per_method
        atomic = [builder.atomic(item) for item in proposal.atomic[:n]]
        bases = {c.lineage.index: c for c in await self._vet_all(parent, atomic, first, reserved)}
        later = []
        if "depth" in self.options.methods:
            later += [builder.depth(item, bases) for item in proposal.depth[:n]]
        if "width" in self.options.methods:
            later += [builder.width(item, bases) for item in proposal.width[:n]]
        extended = await self._vet_all(parent, later, first, reserved)
        kept = [c for c in bases.values() if "atomic" in self.options.methods]
        return await self._accept(parent, builder, kept + extended)

    async def _vet_all(
        self, parent: Trajectory, made: list[Candidate | Turned], first: list, reserved: list[str]
    ) -> list[Candidate]:
        """The candidates that pass every filter before acceptance."""
        for item in made:
            self.report.proposed[item.method] += 1
            if isinstance(item, Turned):
                self._drop(parent, item, item.reason)
        live = [c for c in made if isinstance(c, Candidate)]
        for c in live:
            c.lineage.exchanges[:0] = first
        verdicts = await asyncio.gather(*(self._vet(parent, c, reserved) for c in live))
        return [c for c, ok in zip(live, verdicts, strict=True) if ok]

    async def _vet(self, parent: Trajectory, c: Candidate, reserved: list[str]) -> bool:
        if c.task_id in self.produced:
            return True  # decided, and produced, by an earlier run
        duplicate = self.dedup.check(c.question)
        if duplicate is not None:
            self._drop(parent, c, f"{duplicate.kind} duplicate")
            return False
        self.dedup.add(c.task_id, c.question)  # reserved now: a concurrent twin is a duplicate
        reserved.append(c.task_id)
        reply = await self.model.ask(check_messages(c.question))
        c.lineage.exchanges.append(reply.exchange)
        if await _answers(c, final_answer(reply.text)):
            self.dedup.remove(c.task_id)
            self._drop(parent, c, TOOL_FREE, [reply.exchange.as_json()])
            return False
        return True

    async def _accept(
        self, parent: Trajectory, builder: CandidateBuilder, kept: list[Candidate]
    ) -> ParentResult:
        result = ParentResult()
        fresh: list[tuple[Candidate, Task]] = []
        for c in kept:
            if c.task_id in self.produced:
                self.report.resumed += 1
                self._decide(parent, c, "resumed")
                continue
            task = builder.build(c.task_id, c.method, c.question, c.spec, c.lineage)
            if isinstance(task, str):
                self.dedup.remove(c.task_id)
                self._drop(parent, c, TOO_LARGE)
                continue
            fresh.append((c, task))
        granted = set(self.allowance.take([c.task_id for c, _ in fresh]))
        for c, _ in fresh:
            if c.task_id not in granted:
                self.dedup.remove(c.task_id)
                result.cut = True
                self._drop(parent, c, LEFT_FOR_LATER)
        fresh = [(c, t) for c, t in fresh if c.task_id in granted]
        if self.trials is not None and fresh:
            return await self._trial(parent, fresh, result)
        for c, task in fresh:
            self._keep(parent, c)
            result.tasks.append(task)
        return result

    async def _trial(
        self, parent: Trajectory, fresh: list[tuple[Candidate, Task]], result: ParentResult
    ) -> ParentResult:
        """--solve: the runtimes run each candidate k times; kept within the pass-rate range."""
        rates = await self.trials.run([task for _, task in fresh])
        self.report.produced += sum(task.samples for _, task in fresh)
        for c, task in fresh:
            self.produced.add(c.task_id)
            why = self.trials.judge(rates.get(c.task_id))
            if why is None:
                self._keep(parent, c)
                result.trials.append(task)
            else:
                self._drop(parent, c, why)
        return result

    def _keep(self, parent: Trajectory, c: Candidate) -> None:
        self.report.accept(c.method, c.generation)
        self._decide(parent, c, "accepted")

    def _drop(
        self, parent: Trajectory, c: Candidate | Turned, reason: str, exchanges: list | None = None
    ) -> None:
        self.report.dropped[reason.split(":")[0]] += 1
        self._decide(parent, c, "dropped", reason, exchanges or [])

    def _decide(
        self,
        parent: Trajectory,
        c: Candidate | Turned,
        outcome: str,
        reason: str = "",
        exchanges: list | None = None,
    ) -> None:
        if self.on_decision is None:
            return
        generation = c.generation if isinstance(c, Candidate) else schema.generation_of(parent) + 1
        self.on_decision(
            Decision(
                c.task_id,
                c.method,
                generation,
                parent.key,
                c.question,
                outcome,
                reason,
                exchanges or [],
            )
        )


async def _answers(c: Candidate, reply: str) -> bool:
    """Whether `reply` passes every part of the candidate's own verify spec."""
    specs = c.spec if isinstance(c.spec, list) else [c.spec]
    subject = Subject(c.task, reply)
    for spec in specs:
        judgement = await AnswerVerifier().verify(spec, subject, VerifyContext())
        if not judgement.passed:
            return False
    return True
