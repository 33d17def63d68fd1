"""The three small interfaces a runtime is made of (in the spirit of mini-swe-agent):

- Model:    an LLM endpoint. `chat()` returns the reply plus the raw exchange (LlmExchange)
            that goes into the step, so a trajectory carries everything needed for training.
- a tool:   something that really acts (python sandbox, browser). It returns what it observed;
            nothing is invented.
- Runtime:  the agent for one task type. `run()` drives Model and tools for one task, reports
            each step (a StepReport) through `emit` as it happens, and returns an Outcome.

runtimes/agent.py is the one loop (query -> parse -> act -> observe) the built-in runtimes drive.

streams/runtime/worker.py and streams/runtime/attempt.py own everything Kafka: they wrap each Step
in a StepEvent, enforce the task's timeout and commit offsets. A runtime never sees Kafka, and never
numbers its steps: the attempt does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from adp.schemas.contracts import Artifact, ErrorType, LlmExchange, Step, Task


@dataclass
class ToolCall:
    """A function call the model asked for (OpenAI tools format, or parsed from text)."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass
class ModelReply:
    """What a Model returns: the assistant text, any tool calls, and the raw exchange."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    exchange: LlmExchange | None = None
    # the assistant message to append to the conversation, as the endpoint returned it
    message: dict[str, Any] = field(default_factory=dict)


class Model(Protocol):
    async def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ModelReply: ...


@dataclass(frozen=True)
class Sampling:
    """Which sample of its task an attempt is, and the request parameters that sample asks for
    (temperature, seed). A Model applies `params` to every call made while it is current and
    keeps samples apart in any response cache, so k samples of a task are k real draws."""

    sample_index: int = 0
    params: dict[str, Any] = field(default_factory=dict)


# Sampling is frozen: the shared default is never mutated
CURRENT_SAMPLING: ContextVar[Sampling] = ContextVar("adp_sampling", default=Sampling())  # noqa: B039


@contextmanager
def sampling(
    sample_index: int, temperature: float | None = None, seed: int | None = None
) -> Iterator[Sampling]:
    """Make this sample's parameters current for the Model calls inside the block (the
    attempt runs the runtime inside it; runtimes need not know)."""
    params = {k: v for k, v in (("temperature", temperature), ("seed", seed)) if v is not None}
    token = CURRENT_SAMPLING.set(Sampling(sample_index, params))
    try:
        yield CURRENT_SAMPLING.get()
    finally:
        CURRENT_SAMPLING.reset(token)


@dataclass
class Outcome:
    """How one attempt at a task ended."""

    success: bool
    final_result: str
    error: str | None = None
    error_type: ErrorType | None = None


class StepReport(BaseModel):
    """One step as a runtime reports it: every field of the Step contract except step_id, which
    the attempt assigns (1..n in emit order). tests/test_contracts.py keeps the two in step."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

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
    # the bytes of kept artifacts by sha256; not a Step field: the attempt sends them beside
    # the step event and records where they went (Artifact.location)
    _blobs: dict[str, bytes] = PrivateAttr(default_factory=dict)

    @property
    def blobs(self) -> dict[str, bytes]:
        return self._blobs

    def numbered(self, step_id: int) -> Step:
        return Step(
            step_id=step_id, **{name: getattr(self, name) for name in type(self).model_fields}
        )


# A runtime reports StepReports; a full Step is accepted too (its step_id is replaced).
EmitStep = Callable[[StepReport | Step], Awaitable[None]]


@dataclass
class RuntimeContext:
    """What the platform hands a runtime when it builds it."""

    runtime_id: str
    model: Model
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Runtime(Protocol):
    """An agent for one task type. Built once per process with a RuntimeContext, entered as an
    async context manager (to start pools such as browsers), then `run` is called for many
    tasks concurrently."""

    task_type: ClassVar[str]

    async def __aenter__(self) -> Runtime: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def run(self, task: Task, emit: EmitStep) -> Outcome: ...
