"""Building a synthesized task's identity and lineage (schemas/lineage.py reads it).

Task ids are derived, never drawn: the same parent, method and place in the parent's proposal
give the same id, so a synthesizer that died after producing some of a parent's tasks and redoes
the parent finds those ids already on the task topics and produces none of them twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from adp.schemas import lineage as schema
from adp.schemas.contracts import LlmExchange, Trajectory


def task_id_for(parent_keys: list[str], method: str, index: int, generation: int) -> str:
    """syn<generation>-<method>-<16 hex digits of sha256(parents, method, index)>."""
    if method not in schema.METHODS:
        raise ValueError(f"method must be one of {', '.join(schema.METHODS)}, got {method!r}")
    basis = json.dumps([sorted(parent_keys), method, index], separators=(",", ":"))
    return f"syn{generation}-{method}-{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


def parent_entry(parent: Trajectory) -> dict[str, Any]:
    return {
        "task_id": parent.task_id,
        "key": parent.key,
        "attempt_id": parent.metadata.attempt_id,
        "sample_index": parent.sample_index,
        "generation": schema.generation_of(parent),
    }


@dataclass
class Lineage:
    """The lineage of one candidate as it is being decided; `as_json` is what the task keeps."""

    parent: dict[str, Any]
    method: str
    generation: int
    index: int
    answer: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    exchanges: list[LlmExchange] = field(default_factory=list)
    synthesizer: str = "batch"
    solve: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        # the calls behind it: a proposal shared by siblings counts in each of them
        costs = [e.cost_usd for e in self.exchanges if e.cost_usd is not None]
        out = {
            "method": self.method,
            "generation": self.generation,
            "parents": [self.parent],
            "index": self.index,
            "answer": self.answer,
            "evidence": self.evidence,
            "components": self.components,
            "exchanges": [e.as_json() for e in self.exchanges],
            "prompt_tokens": sum(e.prompt_tokens for e in self.exchanges),
            "completion_tokens": sum(e.completion_tokens for e in self.exchanges),
            "cost_usd": round(sum(costs), 10) if costs else None,
            "synthesizer": self.synthesizer,
        }
        if self.solve is not None:
            out["solve"] = self.solve
        return out
