"""Which trajectories an export keeps, where each one goes (train or validation), and which
conversations are duplicates of ones already written."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from adp.schemas import lineage
from adp.schemas.contracts import ErrorType, Trajectory


@dataclass(frozen=True)
class Filters:
    verified_only: bool = False  # a verifier passed it
    success_only: bool = False  # success: the verdict where there is one, else the claim
    task_type: str | None = None
    # glob that every LLM call of the trajectory must match (its model, or provider/model)
    model: str | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    since: float | None = None  # finished at or after (unix seconds)
    # keep tasks whose judged samples passed at a rate in [low, high] (learnable difficulty);
    # `rates` (task_id -> rate over all its samples in the source) is read before the export
    pass_rate: tuple[float, float] | None = None
    rates: Mapping[str, float | None] | None = field(default=None, compare=False, repr=False)
    # keep trajectories given up to an outage of the LLM, sandbox or browser: they say
    # nothing about the agent, so they are left out unless asked for
    infrastructure: bool = False
    generations: frozenset[int] | None = None  # of synthesized tasks (0: hand-written)
    methods: frozenset[str] | None = None  # synthesis methods (atomic, depth, width)

    def why_not(self, t: Trajectory) -> str | None:
        """None if `t` is kept, else the filter that drops it."""
        if not self.infrastructure and t.metadata.error_type == ErrorType.infrastructure.value:
            return "infrastructure failure"
        if self.verified_only and t.verdict_status != "passed":
            return "not verified"
        if self.success_only and not t.success:
            return "not successful"
        if self.task_type and t.task_type != self.task_type:
            return "another task type"
        if self.model and not only_model(t, self.model):
            return "another model" if not mixed_models(t) else "mixed models"
        if self.min_steps is not None and len(t.steps) < self.min_steps:
            return "too few steps"
        if self.max_steps is not None and len(t.steps) > self.max_steps:
            return "too many steps"
        if self.since is not None and t.metadata.finished_at < self.since:
            return "finished before --since"
        if self.generations is not None and lineage.generation_of(t) not in self.generations:
            return "another generation"
        if self.methods is not None and lineage.method_of(t) not in self.methods:
            return "another synthesis method"
        if self.pass_rate is not None:
            return self._why_not_rate(t)
        return None

    def _why_not_rate(self, t: Trajectory) -> str | None:
        rate = (self.rates or {}).get(t.task_id)
        if rate is None:
            return "no judged sample to take a pass rate of"
        low, high = self.pass_rate
        return None if low <= rate <= high else "pass rate outside --pass-rate"

    def describe(self) -> list[str]:
        out = []
        if self.verified_only:
            out.append("verified only (a verifier passed it)")
        if self.success_only:
            out.append("successful only")
        for name in ("task_type", "model", "min_steps", "max_steps"):
            if getattr(self, name) is not None:
                out.append(f"{name.replace('_', ' ')}: {getattr(self, name)}")
        if self.pass_rate is not None:
            out.append(
                "tasks whose judged samples passed at a rate in [{:g}, {:g}]".format(
                    *self.pass_rate
                )
            )
        if self.infrastructure:
            out.append("infrastructure failures included")
        if self.since is not None:
            from datetime import datetime

            out.append("finished since " + datetime.fromtimestamp(self.since, UTC).isoformat())
        if self.generations is not None:
            out.append("generation " + ", ".join(map(str, sorted(self.generations))))
        if self.methods is not None:
            out.append("synthesis method " + ", ".join(sorted(self.methods)))
        return out or ["none"]


def parse_generations(text: str) -> frozenset[int]:
    """ "2", "0,2" or "1-3" -> the generations; ValueError names what is wrong."""
    found: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"{part!r}: a generation (0, 1, ...) or a range such as 1-3") from None
        if first < 0 or last < first:
            raise ValueError(f"{part!r}: generations count up from 0 (hand-written tasks)")
        found.update(range(first, last + 1))
    if not found:
        raise ValueError("name at least one generation")
    return frozenset(found)


def models_of(t: Trajectory) -> list[str]:
    return sorted({s.llm.model for s in t.steps if s.llm is not None})


def only_model(t: Trajectory, pattern: str) -> bool:
    """Did every LLM call of `t` (at least one) use a model matching `pattern` (a glob over
    the model name or provider/model)?"""
    calls = [(s.llm.provider, s.llm.model) for s in t.steps if s.llm is not None]
    return bool(calls) and all(
        fnmatch.fnmatchcase(model, pattern) or fnmatch.fnmatchcase(f"{provider}/{model}", pattern)
        for provider, model in calls
    )


def mixed_models(t: Trajectory) -> bool:
    return len({(s.llm.provider, s.llm.model) for s in t.steps if s.llm is not None}) > 1


def providers_of(t: Trajectory) -> list[str]:
    return sorted({s.llm.provider for s in t.steps if s.llm is not None})


def split_of(task_id: str, validation: float) -> str:
    """ "validation" for a stable share of task_ids, "train" for the rest: a hash of the
    task_id decides, so every sample of a task lands in the same split, run after run."""
    if validation <= 0:
        return "train"
    point = int(hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:16], 16) / 2**64
    return "validation" if point < validation else "train"


@dataclass
class Dedup:
    """Remembers conversations by a hash of their canonical JSON."""

    seen: set[str] = field(default_factory=set)
    dropped: int = 0

    def first(self, conversation: Any) -> bool:
        digest = hashlib.sha256(
            json.dumps(conversation, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()
        if digest in self.seen:
            self.dropped += 1
            return False
        self.seen.add(digest)
        return True
