"""Topic names, families and configs: the one place that says how topics are laid out.

Partition counts are chosen when topics are created (`adp kafka up --partitions`, `adp topics
create --partitions`) and may grow later (`adp topics grow`); the numbers here are only the
defaults for creation. Components never assume them: whoever needs a count asks the broker
(streams/kafka/admin.py partition_counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adp.core.settings import MiB
from adp.schemas.contracts import TaskType

STEPS = "adp.steps"
TRAJECTORIES = "adp.trajectories"
DLQ = "adp.dlq"
ARTIFACTS = (
    "adp.artifacts"  # bytes of files steps wrote, chunked, key sha256 (streams/kafka/artifacts.py)
)

# topic family -> partitions at creation. A group has at most as many busy members as its
# topic has partitions: tasks limits runtimes per type, steps limits aggregators.
FAMILIES = ("tasks", "steps", "trajectories", "dlq", "artifacts")
DEFAULT_PARTITIONS = {"tasks": 6, "steps": 6, "trajectories": 6, "dlq": 1, "artifacts": 6}


@dataclass(frozen=True)
class Lane:
    """A priority lane: one task topic per task type, fed by a range of task priorities.

    Kafka keeps order per partition, not priority, so priority is designed in at produce time:
    a task goes to its type's lane topic for its priority, and runtimes take from higher lanes
    first (streams/runtime/lanes.py decides, with a minimum share for lower lanes so they never
    starve). The default lane is the plain adp.tasks.<type> of every earlier version: nothing
    produced before lanes existed is stranded, and a task produced by another client without
    choosing a lane lands there."""

    name: str
    suffix: str  # appended to adp.tasks.<type>
    lowest: int  # priorities lowest..highest go here
    highest: int


# Highest first: the order runtimes serve them in.
LANES = (
    Lane("high", ".high", 8, 10),
    Lane("default", "", 4, 7),
    Lane("low", ".low", 1, 3),
)
DEFAULT_LANE = LANES[1]
LANE_NAMES = tuple(lane.name for lane in LANES)


def lane_for_priority(priority: int) -> Lane:
    for lane in LANES:
        if lane.lowest <= priority <= lane.highest:
            return lane
    raise ValueError(f"priority {priority} is outside 1..10")


def lane_named(name: str) -> Lane:
    for lane in LANES:
        if lane.name == name:
            return lane
    raise ValueError(f"no lane {name!r}; lanes are {', '.join(LANE_NAMES)}")


def task_topic(task_type: TaskType | str, lane: Lane | str = DEFAULT_LANE) -> str:
    """adp.tasks.<type> (the default lane) or adp.tasks.<type>.<lane>."""
    lane = lane if isinstance(lane, Lane) else lane_named(lane)
    return f"adp.tasks.{TaskType(task_type).value}{lane.suffix}"


def topic_for_task(task_type: TaskType | str, priority: int) -> str:
    """Where `adp produce` sends a task: its type's lane for its priority."""
    return task_topic(task_type, lane_for_priority(priority))


def lane_topics(task_type: TaskType | str) -> list[str]:
    """Every lane topic of a task type, highest lane first: what its runtimes subscribe to."""
    return [task_topic(task_type, lane) for lane in LANES]


def lane_of(topic: str) -> Lane:
    """The lane of a task topic (adp.tasks.code.high -> high); ValueError if not a task topic."""
    prefix, _, rest = topic.partition("adp.tasks.")
    if prefix or not rest:
        raise ValueError(f"{topic!r} is not a task topic")
    for lane in LANES:
        if lane.suffix and rest.endswith(lane.suffix) and rest[: -len(lane.suffix)] in _TYPES:
            return lane
    if rest in _TYPES:
        return DEFAULT_LANE
    raise ValueError(f"{topic!r} is not a task topic")


_TYPES = frozenset(t.value for t in TaskType)


def runtime_group(task_type: str) -> str:
    return f"adp-runtime-{task_type}"


# The aggregator's Faust app id, which is its consumer group on adp.steps (`adp aggregate
# --app-id` changes it; `adp console --aggregator-group` follows).
AGGREGATOR_GROUP = "adp-aggregator"


def family_of(topic: str) -> str | None:
    """The family a platform topic belongs to, or None for another topic."""
    if topic.startswith("adp.tasks."):
        return "tasks"
    return {STEPS: "steps", TRAJECTORIES: "trajectories", DLQ: "dlq", ARTIFACTS: "artifacts"}.get(
        topic
    )


def family_topics(family: str) -> list[str]:
    if family == "tasks":  # every lane of every type
        return [topic for t in TaskType for topic in lane_topics(t)]
    return {
        "steps": [STEPS],
        "trajectories": [TRAJECTORIES],
        "dlq": [DLQ],
        "artifacts": [ARTIFACTS],
    }[family]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def parse_partitions(text: str | None) -> dict[str, int]:
    """'12' (tasks, steps and trajectories) or 'tasks=24,steps=12' -> partitions per family,
    defaults filled in. Raises ValueError naming what is wrong."""
    counts = dict(DEFAULT_PARTITIONS)
    if not text:
        return counts
    for part in (p.strip() for p in text.split(",") if p.strip()):
        family, _, number = part.rpartition("=")
        families = [family] if family else ["tasks", "steps", "trajectories"]
        if family and family not in FAMILIES:
            raise ValueError(f"unknown topic family {family!r} (one of {', '.join(FAMILIES)})")
        try:
            n = int(number)
        except ValueError:
            raise ValueError(f"{part!r}: expected N or FAMILY=N with N a whole number") from None
        if n < 1:
            raise ValueError(f"{part!r}: a topic needs at least 1 partition")
        counts.update({f: n for f in families})
    return counts


def platform_topics(
    min_insync_replicas: int = 1,
    partitions: dict[str, int] | None = None,
    max_message_bytes: int = 32 * MiB,
) -> list[TopicSpec]:
    """Every topic the platform uses, with `partitions` per family (defaults above). Steps and
    artifacts are kept forever (replay rebuilds from them); trajectories are compacted because
    only the latest per task_id counts."""
    counts = {**DEFAULT_PARTITIONS, **(partitions or {})}
    # max.message.bytes: a trajectory carries every raw LLM exchange, a task may carry a 10 MB
    # description; a deployment's broker default (1 MB) must not silently cap them.
    durable = {
        "min.insync.replicas": str(min_insync_replicas),
        "max.message.bytes": str(max_message_bytes),
    }
    extra = {
        "steps": {"retention.ms": "-1"},
        "trajectories": {"cleanup.policy": "compact"},
        "artifacts": {"retention.ms": "-1"},
    }
    return [
        TopicSpec(name, counts[family], {**durable, **extra.get(family, {})})
        for family in FAMILIES
        for name in family_topics(family)
    ]
