"""The platform's data contracts: pydantic models mirroring schemas/*.avsc.

schemas/*.avsc are the one source of truth for what travels on Kafka; these models are how
Python code builds and reads those records. tests/test_contracts.py proves that each model's
fields match its schema's (names, types, optionality, defaults), so the two cannot drift.

Fields whose Avro type is `{"type": "string", "logicalType": "json"}` are plain Python
objects here; adp.schemas.codec turns them into JSON text on the wire.

Where a step event is born, travels and lands:
  runtimes/<type>.py reports each step -> streams/attempt.py (Attempt.emit) numbers it, wraps it
  in a StepEvent and sends it to adp.steps -> streams/aggregator.py (Faust) feeds it to
  streams/assembly.py -> Trajectory -> adp.trajectories -> connectors/sinks/ write
  output/trajectories/<task_id>.json.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TaskType(str, enum.Enum):
    reasoning = "reasoning"
    code = "code"
    web = "web"


class EventType(str, enum.Enum):
    started = "started"
    step = "step"
    finished = "finished"


class ErrorType(str, enum.Enum):
    """Why an attempt ended without success (Finish.error_type)."""

    timeout = "timeout"
    max_steps = "max_steps"
    llm_error = "llm_error"
    runtime_error = "runtime_error"
    cancelled = "cancelled"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


TASK_FIELDS = (
    "task_id", "task_type", "description", "expected_tools",
    "max_steps", "timeout", "priority", "constraints", "metadata",
)


class Task(_Record):
    """One line of tasks.jsonl. Unknown top-level keys of a line are kept in `metadata`."""

    task_id: str = Field(min_length=1, max_length=512)
    task_type: TaskType
    description: str
    expected_tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=10, ge=1, le=1000)
    timeout: float = Field(default=300.0, gt=0, le=86400)
    priority: int = Field(default=5, ge=1, le=10)
    constraints: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task_id")
    @classmethod
    def _task_id_is_a_safe_file_name(cls, value: str) -> str:
        # task_id names the output file: no path separators, no leading dot, no control chars.
        if "/" in value or "\\" in value or value.startswith(".") or any(
            ord(ch) < 32 for ch in value
        ):
            raise ValueError("must not contain '/', '\\', control characters or start with '.'")
        return value

    @classmethod
    def from_line(cls, obj: Any) -> "Task":
        """Validate one decoded tasks.jsonl object; extra keys go to metadata."""
        if not isinstance(obj, dict):
            raise ValueError(f"a task line must be a JSON object, got {type(obj).__name__}")
        known = {k: v for k, v in obj.items() if k in TASK_FIELDS}
        extra = {k: v for k, v in obj.items() if k not in TASK_FIELDS}
        if extra:
            known["metadata"] = {**extra, **(known.get("metadata") or {})}
        return cls.model_validate(known)


class LlmExchange(_Record):
    """The raw LLM call behind a step: enough to build training data without re-running."""

    provider: str
    model: str
    request: Any
    response: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    cached: bool = False


class Step(_Record):
    step_id: int = Field(ge=1)
    action_type: str
    action_params: Any
    observation: str
    thinking: str | None = None
    success: bool
    error: str | None = None
    timestamp: float
    duration: float
    llm: LlmExchange | None = None


class Finish(_Record):
    success: bool
    final_result: str
    error: str | None = None
    error_type: ErrorType | None = None
    total_duration: float
    step_count: int = Field(ge=0)


class StepEvent(_Record):
    event_type: EventType
    task_id: str
    attempt_id: str
    task_type: TaskType
    runtime_id: str
    timestamp: float
    task: Task | None = None
    step: Step | None = None
    finish: Finish | None = None


class TrajectoryMetadata(_Record):
    runtime_id: str
    attempt_id: str
    error: str | None = None
    error_type: ErrorType | None = None
    started_at: float
    finished_at: float
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_llm_calls: int
    task: Any


class Trajectory(_Record):
    task_id: str
    task_type: TaskType
    description: str
    success: bool
    steps: list[Step]
    final_result: str
    total_duration: float
    metadata: TrajectoryMetadata

