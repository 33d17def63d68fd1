"""The platform's data contracts: pydantic models mirroring schemas/*.avsc.

schemas/*.avsc are the one source of truth for what travels on Kafka; these models are how
Python code builds and reads those records. tests/test_contracts.py proves that each model's
fields match its schema's (names, types, optionality, defaults), so the two cannot drift.

Fields whose Avro type is `{"type": "string", "logicalType": "json"}` are plain Python
objects here; adp.schemas.codec turns them into JSON text on the wire.

Where a step event is born, travels and lands:
  runtimes/<type>.py reports each step -> streams/runtime/attempt.py (Attempt.emit) numbers it,
  wraps it in a StepEvent and sends it to adp.steps -> streams/aggregator/faust_app.py (Faust) feeds
  it to streams/aggregator/assembly.py -> Trajectory -> adp.trajectories, and once acknowledged
  streams/aggregator/writer.py -> connectors/sinks/ write output/trajectories/<task_id>.json.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


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
    # not the agent's failure: an LLM endpoint, sandbox, browser or sink outage outlasted the
    # runtime's outage budget (exports leave these out unless asked)
    infrastructure = "infrastructure"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    def as_json(self) -> dict:
        """model_dump(mode="json") (a Trajectory may know it without dumping: see there)."""
        return self.model_dump(mode="json")

    def keep_json(self, data: dict) -> None:
        """Told the JSON-mode data the record was validated from (codec.decode_record): only
        a Trajectory keeps it."""


TASK_FIELDS = (
    "task_id",
    "task_type",
    "description",
    "expected_tools",
    "max_steps",
    "timeout",
    "priority",
    "constraints",
    "metadata",
    "verify",
    "samples",
    "sample_index",
    "temperature",
    "seed",
    "policy_version",
)
MAX_SAMPLES = 1000


def sample_key(task_id: str, sample_index: int) -> str:
    """The Kafka key (and file name stem) of one sample of a task: the task_id itself for
    sample 0 -- so a task with one sample is keyed and named as it always was -- and
    "<task_id>/<i>" for the others ('/' never occurs in a task_id, so keys never collide)."""
    return task_id if sample_index == 0 else f"{task_id}/{sample_index}"


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
    verify: Any = None
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES)
    sample_index: int = Field(default=0, ge=0, lt=MAX_SAMPLES)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    policy_version: int | None = Field(default=None, ge=0)

    @field_validator("task_id")
    @classmethod
    def _task_id_is_a_safe_file_name(cls, value: str) -> str:
        # task_id names the output file: no path separators, no leading dot, no control chars.
        if (
            "/" in value
            or "\\" in value
            or value.startswith(".")
            or any(ord(ch) < 32 for ch in value)
        ):
            raise ValueError("must not contain '/', '\\', control characters or start with '.'")
        return value

    @classmethod
    def from_line(cls, obj: Any) -> Task:
        """Validate one decoded tasks.jsonl object; extra keys go to metadata."""
        if not isinstance(obj, dict):
            raise ValueError(f"a task line must be a JSON object, got {type(obj).__name__}")
        known = {k: v for k, v in obj.items() if k in TASK_FIELDS}
        extra = {k: v for k, v in obj.items() if k not in TASK_FIELDS}
        if extra:
            known["metadata"] = {**extra, **(known.get("metadata") or {})}
        return cls.model_validate(known)

    @property
    def key(self) -> str:
        """This sample's Kafka key: see sample_key."""
        return sample_key(self.task_id, self.sample_index)


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
    cost_usd: float | None = None
    # The request is stored as what it adds to the conversation: with prefix_step set,
    # request["messages"] holds only the messages after the first prefix_messages of that
    # step's full request (schemas/conversation.py rebuilds it), so an attempt's bytes
    # grow with its steps, not with their square.
    prefix_step: int | None = None
    prefix_messages: int = 0
    # Token-exact data where the endpoint returns it (never invented): what a trainer uses
    # instead of re-tokenizing the text.
    prompt_token_ids: list[int] = Field(default_factory=list)
    completion_token_ids: list[int] = Field(default_factory=list)
    completion_logprobs: list[float] = Field(default_factory=list)
    model_revision: str | None = None


class ArtifactLocation(_Record):
    """Where a kept file's bytes are: its chunks on the artifacts topic
    (streams/kafka/artifacts.py)."""

    topic: str
    partition: int
    offsets: list[int]


class Artifact(_Record):
    """A file a step's tool wrote; the bytes travel beside the step (`location`) and land next to
    the trajectory in the sinks."""

    name: str
    size: int
    media_type: str
    sha256: str
    kept: bool
    note: str | None = None
    location: ArtifactLocation | None = None


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
    artifacts: list[Artifact] = Field(default_factory=list)


class Verdict(_Record):
    """A verifier's judgement, apart from the agent's claim. `passed` is None when the task
    names no verifier (verifier "") or the verifier could not run (`error` says why)."""

    verifier: str
    passed: bool | None = None
    score: float | None = None
    details: str = ""
    error: str | None = None
    spec: Any = None
    llm: LlmExchange | None = None
    verified_at: float = 0.0
    duration: float = 0.0

    @property
    def status(self) -> str:
        """passed | failed | error | unverified"""
        return verdict_status(self)


UNVERIFIED = Verdict(verifier="")


def verdict_status(verification: Verdict | dict | None) -> str:
    """passed | failed | error | unverified: the one place a verdict's status is decided, for a
    Verdict or the JSON document of one (as a stored trajectory holds it, perhaps written by a
    version with other fields). None or no verifier: unverified (trajectories written before
    verification existed, tasks that name no verifier); a verifier that gave no pass or fail
    could not run: error."""
    if isinstance(verification, dict):
        verifier, passed = verification.get("verifier"), verification.get("passed")
    elif verification is not None:
        verifier, passed = verification.verifier, verification.passed
    else:
        return "unverified"
    if not verifier:
        return "unverified"
    if not isinstance(passed, bool):
        return "error"
    return "passed" if passed else "failed"


class Finish(_Record):
    success: bool
    final_result: str
    error: str | None = None
    error_type: ErrorType | None = None
    total_duration: float
    step_count: int = Field(ge=0)
    verdict: Verdict | None = None


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
    sample_index: int = 0

    @property
    def key(self) -> str:
        return sample_key(self.task_id, self.sample_index)


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
    cost_usd: float | None = None
    models: list[str] = Field(default_factory=list)  # "provider/model", in order of first use


class Trajectory(_Record):
    task_id: str
    task_type: TaskType
    description: str
    policy_version: int | None = None
    sample_index: int = 0
    success: bool
    claimed_success: bool | None = None
    verification: Verdict | None = None
    steps: list[Step]
    final_result: str
    total_duration: float
    metadata: TrajectoryMetadata

    # The JSON-mode data this trajectory was validated from, kept where the code that validated
    # it knows that data is exactly what model_dump(mode="json") gives (codec.decode_record,
    # build.build_trajectory): as_json() returns it instead of dumping again. Dumping a
    # trajectory builds a new tree of every nested LLM exchange (about 1 ms each on bench/
    # workload.py's), and the aggregator did it twice per trajectory (encode, render). Setting
    # a field or copying the record drops it, so it never describes another state than this
    # object's; trajectories are built and then sent, never changed in place below the top
    # level. Only here: a private attribute costs every instance of a model a Python call.
    _json: dict | None = PrivateAttr(default=None)

    def as_json(self) -> dict:
        return self._json if self._json is not None else self.model_dump(mode="json")

    def keep_json(self, data: dict) -> None:
        self._json = data

    def __eq__(self, other: object) -> bool:  # the same record whether or not it knows _json
        if not isinstance(other, Trajectory):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            super().__setattr__("_json", None)

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Any:
        copy = super().model_copy(update=update, deep=deep)
        copy._json = None
        return copy

    @property
    def key(self) -> str:
        """Kafka key on adp.trajectories and file name stem: see sample_key."""
        return sample_key(self.task_id, self.sample_index)

    @property
    def claimed(self) -> bool:
        """The agent's own claim (trajectories from before verification: their success)."""
        return self.success if self.claimed_success is None else self.claimed_success

    @property
    def verdict_status(self) -> str:
        """passed | failed | error | unverified"""
        return (self.verification or UNVERIFIED).status
