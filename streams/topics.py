"""Topic names, partition counts and configs: the one place that says how topics are laid out."""

from __future__ import annotations

from dataclasses import dataclass, field

from adp.schemas.contracts import TaskType

STEPS = "adp.steps"
TRAJECTORIES = "adp.trajectories"
DLQ = "adp.dlq"


def task_topic(task_type: TaskType | str) -> str:
    return f"adp.tasks.{TaskType(task_type).value}"


def runtime_group(task_type: str) -> str:
    return f"adp-runtime-{task_type}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def platform_topics(min_insync_replicas: int = 1) -> list[TopicSpec]:
    """Every topic the platform uses. Tasks and steps get 6 partitions so up to 6 consumers of a
    group share the work; trajectories are compacted because only the latest per task_id counts."""
    # 32 MiB: a trajectory carries every raw LLM exchange, a task may carry a 10 MB description;
    # a deployment's broker default (1 MB) must not silently cap them.
    durable = {"min.insync.replicas": str(min_insync_replicas), "max.message.bytes": "33554432"}
    specs = [TopicSpec(task_topic(t), 6, durable) for t in TaskType]
    specs.append(TopicSpec(STEPS, 6, {**durable, "retention.ms": "-1"}))
    specs.append(TopicSpec(TRAJECTORIES, 6, {**durable, "cleanup.policy": "compact"}))
    specs.append(TopicSpec(DLQ, 1, durable))
    return specs
