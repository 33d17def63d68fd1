"""Where a synthesized task came from: its lineage, kept in the Task's `metadata` under "lineage".

A task `adp synthesize` made is an ordinary Task; what makes it synthesized is this one metadata
entry, so no schema changes and every record that carries the task carries its lineage: the task
records on adp.tasks.*, each step event's task, and every trajectory of it
(metadata.task.metadata.lineage). A hand-written task has none and is generation 0.

    {"method": "atomic" | "depth" | "width",
     "generation": 1,                         # the parent's generation + 1
     "parents": [{"task_id", "key", "attempt_id", "sample_index", "generation"}],
     "index": 0,                              # its place among the parent's proposals
     "answer": "3628800",                     # the value its verify spec checks
     "evidence": [{"step_id", "excerpt"}],    # where a tool really returned that value
     "components": ["syn1-atomic-..."],       # depth: the atomic task it builds on; width: two
     "exchanges": [LlmExchange, ...],         # the raw synthesis calls behind it, as for steps
     "prompt_tokens", "completion_tokens", "cost_usd",
     "synthesizer": "adp-synthesizer",        # the consumer group (or "batch") that made it
     "solve": {"samples": 4, "pass_rate": [0.1, 0.9]}}   # only with --solve

This module only reads lineage (exports, the console, the synthesizer all ask the same questions
of tasks, task documents, trajectories and trajectory documents); streams/synthesis/lineage.py
builds it.
"""

from __future__ import annotations

from typing import Any

KEY = "lineage"
METHODS = ("atomic", "depth", "width")


def lineage_of(record: Any) -> dict[str, Any] | None:
    """The lineage of a Task, a task document, a Trajectory or a trajectory document; None for
    a hand-written task (or anything else)."""
    metadata = _task_metadata(record)
    value = metadata.get(KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, dict) else None


def generation_of(record: Any) -> int:
    """0 for a hand-written task, else the generation its lineage names."""
    lineage = lineage_of(record)
    value = lineage.get("generation") if lineage else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def method_of(record: Any) -> str | None:
    """atomic | depth | width, or None for a hand-written task."""
    lineage = lineage_of(record)
    method = lineage.get("method") if lineage else None
    return method if isinstance(method, str) else None


def parent_ids(record: Any) -> list[str]:
    """The task_ids of the parents a synthesized task was made from (none if hand-written)."""
    lineage = lineage_of(record)
    parents = lineage.get("parents") if lineage else None
    if not isinstance(parents, list):
        return []
    ids = [p.get("task_id") for p in parents if isinstance(p, dict)]
    return list(dict.fromkeys(i for i in ids if isinstance(i, str)))


def _task_metadata(record: Any) -> Any:
    """The task's own metadata, wherever the record keeps it."""
    if isinstance(record, dict):
        meta = record.get("metadata")
        if "steps" in record:  # a trajectory document: its metadata keeps the task
            task = meta.get("task") if isinstance(meta, dict) else None
            return task.get("metadata") if isinstance(task, dict) else None
        return meta  # a task document
    meta = getattr(record, "metadata", None)
    task = getattr(meta, "task", None)
    if isinstance(task, dict):  # a Trajectory: its TrajectoryMetadata keeps the task
        return task.get("metadata")
    return meta  # a Task
