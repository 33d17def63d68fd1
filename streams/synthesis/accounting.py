"""What synthesis spent and decided: the LLM budget, the limits that stop it, the counted report.

Pure: the synthesizer charges every LLM exchange here and asks before every call whether the
budget allows another; the report counts every parent and candidate by what became of it, so
each filter's effect is visible (`adp synthesize` prints it, --json gives it whole).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from adp.core.errors import BadInput
from adp.schemas.contracts import LlmExchange

# why a run stopped
MAX_TASKS = "max-tasks"
BUDGET = "budget"
MAX_GENERATIONS = "max-generations"
DRIED_UP = "dried-up"
SOURCE_DONE = "source-done"
STOPPED = "stopped"


class BudgetReached(Exception):
    """The budget is spent: no further LLM call; the parent in hand is left for a later run."""


class UnpricedModel(BadInput):
    """A budget was set but the model's calls have no price, so it could not be kept."""


@dataclass(frozen=True)
class Limits:
    max_generations: int | None = None  # no task beyond this generation
    max_tasks: int | None = None  # at most this many tasks produced (or written)
    budget_usd: float | None = None  # at most this much spent on synthesis LLM calls

    def describe(self) -> str:
        parts = []
        if self.max_generations is not None:
            parts.append(f"generations <= {self.max_generations}")
        if self.max_tasks is not None:
            parts.append(f"tasks <= {self.max_tasks}")
        if self.budget_usd is not None:
            parts.append(f"budget ${self.budget_usd:g}")
        return ", ".join(parts) or "no limits"


@dataclass
class Spend:
    """The synthesis LLM calls: counted, priced, and checked against the budget. `before` is
    what earlier runs of the same flywheel spent (its consumer group's committed accounting)."""

    budget_usd: float | None = None
    before_usd: float = 0.0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    priced: bool = True  # every call so far had a price

    @property
    def total_usd(self) -> float:
        return self.before_usd + self.usd

    @property
    def exhausted(self) -> bool:
        return self.budget_usd is not None and self.total_usd >= self.budget_usd

    def before_call(self) -> None:
        if self.exhausted:
            raise BudgetReached(f"budget ${self.budget_usd:g} spent (${self.total_usd:.6f})")

    def charge(self, exchange: LlmExchange) -> float:
        """Count one call; returns its cost (0 when unpriced)."""
        self.calls += 1
        self.prompt_tokens += exchange.prompt_tokens
        self.completion_tokens += exchange.completion_tokens
        if exchange.cost_usd is None:
            self.priced = False
            if self.budget_usd is not None:
                raise UnpricedModel(
                    f"--budget-usd cannot be kept: {exchange.provider}/{exchange.model} has no "
                    "price (add it to the ADP_PRICES table)"
                )
            return 0.0
        self.usd += exchange.cost_usd
        return exchange.cost_usd

    def as_json(self) -> dict[str, Any]:
        return {
            "llm_calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.usd, 8) if self.priced else None,
            "cost_usd_before": round(self.before_usd, 8),
            "budget_usd": self.budget_usd,
        }


def spend_metadata(usd: float) -> str:
    """What a partition's offset commit carries: the USD spent on the parents read from it."""
    return json.dumps({"usd": round(usd, 10)}, separators=(",", ":"))


def read_spend_metadata(text: str | None) -> float:
    try:
        return float((json.loads(text) if text else {}).get("usd", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0  # a foreign commit: nothing known spent


@dataclass
class Report:
    """Every parent and candidate of a run, counted by what became of it."""

    parents_read: int = 0
    parents_used: int = 0  # proposals asked for
    parents_skipped: Counter = field(default_factory=Counter)  # reason -> parents
    proposed: Counter = field(default_factory=Counter)  # method -> candidates
    dropped: Counter = field(default_factory=Counter)  # reason -> candidates
    accepted: Counter = field(default_factory=Counter)  # (method, generation) -> tasks
    resumed: int = 0  # accepted by an earlier run that did not commit: not produced again
    produced: int = 0  # task records sent (k per task with --solve k)
    written: int = 0  # tasks written to --out
    stop_reason: str | None = None
    stop_detail: str = ""
    spend: Spend = field(default_factory=Spend)

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())

    def accept(self, method: str, generation: int) -> None:
        self.accepted[(method, generation)] += 1

    def stop(self, reason: str, detail: str = "") -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail

    def as_json(self) -> dict[str, Any]:
        return {
            "parents": {
                "read": self.parents_read,
                "used": self.parents_used,
                "skipped": dict(self.parents_skipped),
            },
            "candidates": {
                "proposed": dict(self.proposed),
                "dropped": dict(self.dropped),
                "accepted": self.accepted_total,
                "resumed": self.resumed,
            },
            "accepted": [
                {"method": m, "generation": g, "tasks": n}
                for (m, g), n in sorted(self.accepted.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            ],
            "produced": self.produced,
            "written": self.written,
            "stop": {"reason": self.stop_reason, "detail": self.stop_detail},
            **self.spend.as_json(),
        }
