"""The three small interfaces a runtime is made of (in the spirit of mini-swe-agent):

- Model:    an LLM endpoint. `chat()` returns the reply plus the raw exchange (LlmExchange)
            that goes into the step, so a trajectory carries everything needed for training.
- a tool:   something that really acts (python sandbox, browser). It returns what it observed;
            nothing is invented.
- Runtime:  the agent for one task type. `run()` drives Model and tools for one task, reports
            each Step through `emit` as it happens, and returns an Outcome.

streams/worker.py and streams/attempt.py own everything Kafka: they wrap each Step in a
StepEvent, enforce the task's timeout and commit offsets. A runtime never sees Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ClassVar, Protocol, runtime_checkable

from adp.schemas.contracts import ErrorType, LlmExchange, Step, Task


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


@dataclass
class Outcome:
    """How one attempt at a task ended."""

    success: bool
    final_result: str
    error: str | None = None
    error_type: ErrorType | None = None


EmitStep = Callable[[Step], Awaitable[None]]


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

    async def __aenter__(self) -> "Runtime": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def run(self, task: Task, emit: EmitStep) -> Outcome: ...
