"""From a parent trajectory and the model's proposal to candidate tasks: pure and broker-free.

A candidate is a valid Task (validated exactly as `adp produce` validates a line: the same
parser, the same verify-spec check, the same size limit) of the parent's type, with the parent's
tools, limits, priority and constraints (a web task keeps its start page), a verify spec built
from the observed value its answer is, and its lineage. What cannot be such a task is turned
down here, with the reason the report counts:

    atomic  the answer must be a value a tool of the parent really returned
    depth   builds on an accepted atomic candidate ("uses"); its own answer is another observed
            value, and its question must not state the intermediate answer it needs
    width   fuses two accepted atomic candidates ("fuses"); its spec is both of theirs
Every question must not state its own answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adp.connectors.tasks_source import parse_line
from adp.runtimes.verify import BadSpec, check_spec
from adp.schemas import lineage as schema
from adp.schemas.contracts import Task, Trajectory
from adp.streams.producer import encode_samples
from adp.streams.synthesis.grounding import (
    Observation,
    find_evidence,
    gives_away,
    verify_spec,
)
from adp.streams.synthesis.lineage import Lineage, parent_entry, task_id_for
from adp.streams.synthesis.proposals import Atomic, Depth, Width

# reasons a candidate is turned down here
NOT_GROUNDED = "answer not in any tool output"
GIVES_AWAY = "question states its answer"
INVALID = "not a valid task"
NO_BASE = "builds on a dropped atomic task"
SAME_ANSWER = "depth answer is its intermediate answer"
INCOMPATIBLE = "fuses incompatible tasks"


@dataclass
class Candidate:
    task_id: str
    method: str
    question: str
    answers: list[str]  # what its verify spec checks (two for width)
    spec: Any
    lineage: Lineage
    task: Task  # validated; rebuilt with the final lineage on acceptance

    @property
    def generation(self) -> int:
        return self.lineage.generation


@dataclass(frozen=True)
class Turned:
    """A proposal turned down before any check: why, and what it would have been."""

    task_id: str
    method: str
    question: str
    reason: str


class CandidateBuilder:
    """Candidates of one parent trajectory."""

    def __init__(
        self,
        parent: Trajectory,
        seen: list[Observation],
        synthesizer: str = "batch",
        solve: dict[str, Any] | None = None,
        limit: int = 30 * 1024 * 1024,
    ) -> None:
        self.parent, self.seen = parent, seen
        self.solve = solve  # {"samples": k, "pass_rate": [low, high]} with --solve k
        self.recorded = parent.metadata.task if isinstance(parent.metadata.task, dict) else {}
        self.generation = schema.generation_of(parent) + 1
        self.synthesizer, self.limit = synthesizer, limit

    def task_id(self, method: str, index: int) -> str:
        return task_id_for([self.parent.key], method, index, self.generation)

    def atomic(self, item: Atomic) -> Candidate | Turned:
        task_id = self.task_id("atomic", item.index)
        evidence = find_evidence(item.answer, self.seen)
        if evidence is None:
            return Turned(task_id, "atomic", item.question, NOT_GROUNDED)
        if gives_away(item.question, item.answer):
            return Turned(task_id, "atomic", item.question, GIVES_AWAY)
        lineage = self._lineage("atomic", item.index, item.answer, [evidence.as_json()], [])
        return self._candidate(task_id, "atomic", item.question, [item.answer], lineage)

    def depth(self, item: Depth, bases: dict[int, Candidate]) -> Candidate | Turned:
        task_id = self.task_id("depth", item.index)
        base = bases.get(item.uses)
        if base is None:
            return Turned(task_id, "depth", item.question, NO_BASE)
        evidence = find_evidence(item.answer, self.seen)
        if evidence is None:
            return Turned(task_id, "depth", item.question, NOT_GROUNDED)
        if item.answer.strip().casefold() == base.answers[0].strip().casefold():
            return Turned(task_id, "depth", item.question, SAME_ANSWER)
        if gives_away(item.question, item.answer) or gives_away(item.question, base.answers[0]):
            return Turned(task_id, "depth", item.question, GIVES_AWAY)
        evidence_list = [*base.lineage.evidence, evidence.as_json()]
        lineage = self._lineage("depth", item.index, item.answer, evidence_list, [base.task_id])
        return self._candidate(task_id, "depth", item.question, [item.answer], lineage)

    def width(self, item: Width, bases: dict[int, Candidate]) -> Candidate | Turned:
        task_id = self.task_id("width", item.index)
        one, two = bases.get(item.fuses[0]), bases.get(item.fuses[1])
        if one is None or two is None:
            return Turned(task_id, "width", item.question, NO_BASE)
        if one is two or one.task.task_type != two.task.task_type:
            return Turned(task_id, "width", item.question, INCOMPATIBLE)
        answers = [one.answers[0], two.answers[0]]
        if any(gives_away(item.question, a) for a in answers):
            return Turned(task_id, "width", item.question, GIVES_AWAY)
        evidence_list = [*one.lineage.evidence, *two.lineage.evidence]
        lineage = self._lineage(
            "width", item.index, " | ".join(answers), evidence_list, [one.task_id, two.task_id]
        )
        return self._candidate(task_id, "width", item.question, answers, lineage)

    def _lineage(
        self, method: str, index: int, answer: str, evidence: list, components: list[str]
    ) -> Lineage:
        return Lineage(
            parent=parent_entry(self.parent),
            method=method,
            generation=self.generation,
            index=index,
            answer=answer,
            evidence=evidence,
            components=components,
            synthesizer=self.synthesizer,
            solve=self.solve,
        )

    def _candidate(
        self, task_id: str, method: str, question: str, answers: list[str], lineage: Lineage
    ) -> Candidate | Turned:
        specs = [verify_spec(a, alone=len(answers) == 1) for a in answers]
        spec: Any = specs[0] if len(specs) == 1 else specs
        task = self.build(task_id, method, question, spec, lineage, encode=False)
        if isinstance(task, str):
            return Turned(task_id, method, question, f"{INVALID}: {task}")
        return Candidate(task_id, method, question, answers, spec, lineage, task)

    def build(
        self,
        task_id: str,
        method: str,
        question: str,
        spec: Any,
        lineage: Lineage,
        encode: bool = True,
    ) -> Task | str:
        """The candidate as a task line, validated as `adp produce` validates one, or why not
        (`encode`: also encoded, as produced, against the size limit: on acceptance, when its
        lineage is complete)."""
        scale = 1 if method == "atomic" else 2  # a composite task takes more steps
        line = {
            "task_id": task_id,
            "task_type": self.parent.task_type,
            "description": question,
            "expected_tools": self.recorded.get("expected_tools") or [],
            "max_steps": min(1000, (self.recorded.get("max_steps") or 10) * scale),
            "timeout": min(86400, (self.recorded.get("timeout") or 300) * scale),
            "priority": self.recorded.get("priority") or 5,
            "constraints": self.recorded.get("constraints") or {},
            "verify": spec,
            "metadata": {schema.KEY: lineage.as_json()},
        }
        if self.solve is not None:
            line["samples"] = self.solve["samples"]
        task = parse_line(json.dumps(line, ensure_ascii=False).encode())
        if isinstance(task, str):
            return task
        try:
            check_spec(task.verify)
        except BadSpec as exc:
            return str(exc)
        records = encode_samples(task, None, self.limit) if encode else []
        return records if isinstance(records, str) else task
