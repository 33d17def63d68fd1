"""Rewards and pass@k: what a sample scored, and how often a task is solved in k tries.

pass@k is the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models
Trained on Code"): with n judged samples of a task of which c passed, the chance that k samples
drawn without replacement hold at least one pass is 1 - C(n-c, k) / C(n, k). It is computed
per task for every k up to that task's n, and averaged over the tasks that have n >= k for a
task type or a model. Only judged samples count (a verifier passed or failed them); samples no
verifier judged, or whose verifier could not run, are left out of n.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from math import comb

from adp.schemas.contracts import Trajectory


def reward(t: Trajectory) -> float | None:
    """A sample's reward: the verdict's score where the verifier gave one, else 1.0 passed and
    0.0 failed; None when no verifier judged it."""
    v = t.verification
    if v is None or t.verdict_status not in ("passed", "failed"):
        return None
    if v.score is not None:
        return float(v.score)
    return 1.0 if v.passed else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that k of the n samples hold one of the c passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def k_values(largest_n: int) -> list[int]:
    """The k shown for samples counts up to `largest_n`: 1, 2, 4, 8, ... and n itself."""
    ks, k = [], 1
    while k < largest_n:
        ks.append(k)
        k *= 2
    return [*ks, largest_n] if largest_n >= 1 else []


def model_of(t: Trajectory) -> str:
    """The model a sample ran on ("provider/model" of its first LLM call)."""
    if t.metadata.models:
        return t.metadata.models[0]
    for s in t.steps:
        if s.llm is not None:
            return f"{s.llm.provider}/{s.llm.model}"
    return "none"


@dataclass
class Counts:
    n: int = 0  # judged samples
    c: int = 0  # of them passed


@dataclass
class PassTable:
    """Judged samples per task, per (task type, task) and per (model, task): `add` each
    trajectory once (the latest of its key)."""

    tasks: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_type: dict[str, dict[str, Counts]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counts))
    )
    by_model: dict[str, dict[str, Counts]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counts))
    )

    def add(self, task_id: str, task_type: str, model: str, status: str) -> None:
        if status not in ("passed", "failed"):
            return
        passed = status == "passed"
        for counts in (
            self.tasks[task_id],
            self.by_type[task_type][task_id],
            self.by_model[model][task_id],
        ):
            counts.n += 1
            counts.c += passed

    def add_trajectory(self, t: Trajectory) -> None:
        self.add(t.task_id, t.task_type, model_of(t), t.verdict_status)

    def rate(self, task_id: str) -> float | None:
        """The share of a task's judged samples that passed (None: none judged)."""
        counts = self.tasks.get(task_id)
        return counts.c / counts.n if counts and counts.n else None

    def per_task(self) -> dict[str, dict[str, float]]:
        """task_id -> {k: pass@k} for every k its judged samples allow."""
        return {
            task: {str(k): pass_at_k(cn.n, cn.c, k) for k in k_values(cn.n)}
            for task, cn in sorted(self.tasks.items())
            if cn.n
        }

    def report(self, by: str = "type") -> dict[str, dict[str, dict[str, float]]]:
        """name (task type or model) -> {k: {"pass": mean pass@k, "tasks": tasks averaged}}
        for the k that its tasks' sample counts allow."""
        table = self.by_type if by == "type" else self.by_model
        return {name: summarize(tasks.values()) for name, tasks in sorted(table.items())}


def summarize(tasks) -> dict[str, dict[str, float]]:
    counts = [t for t in tasks if t.n]
    if not counts:
        return {}
    out = {}
    for k in k_values(max(t.n for t in counts)):
        having = [t for t in counts if t.n >= k]
        mean = sum(pass_at_k(t.n, t.c, k) for t in having) / len(having)
        out[str(k)] = {"pass": mean, "tasks": len(having)}
    return out


def describe(report: dict[str, dict[str, float]]) -> str:
    """One line: pass@1 0.50 (12 tasks), pass@4 0.81 (12 tasks), ..."""
    return ", ".join(
        f"pass@{k} {v['pass']:.2f} ({int(v['tasks'])} task{'s' if v['tasks'] != 1 else ''})"
        for k, v in report.items()
    )


def parse_pass_rate(text: str) -> tuple[float, float]:
    """ "LOW:HIGH" (fractions, inclusive) -> (low, high); ValueError names what is wrong."""
    low, sep, high = text.partition(":")
    try:
        bounds = (float(low), float(high))
    except ValueError:
        raise ValueError(f"{text!r}: expected LOW:HIGH, two fractions such as 0.1:0.9") from None
    if not sep or not 0 <= bounds[0] <= bounds[1] <= 1:
        raise ValueError(f"{text!r}: expected LOW:HIGH with 0 <= LOW <= HIGH <= 1")
    return bounds
