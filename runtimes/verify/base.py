"""What a verifier is: a name, a spec check, and `verify(spec, subject, ctx) -> Judgement`.

A verifier judges one finished attempt (a Subject: the task, the agent's final answer, its steps)
against the task's `verify` spec. It returns a Judgement (passed, score, details, and the raw LLM
exchange if it asked a model), or raises CannotVerify when it could not judge at all (sandbox
unavailable, judge down, a reply it cannot read): the verdict then records the error and
decides nothing. Verifiers are found by name through the `adp.verifiers` entry-point group,
like runtimes (docs/tasks.md, "Verification").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from adp.runtimes.base import Model
from adp.runtimes.tools.sandbox import Sandbox, SandboxLimits
from adp.schemas.contracts import TASK_FIELDS, LlmExchange, Step, Task, Trajectory

DEFAULT_TIMEOUT = 60.0  # seconds a verifier may take (a spec's "timeout" overrides it)


class CannotVerify(RuntimeError):
    """The verifier could not judge (not: the attempt failed). The message says why; `llm` is
    the raw exchange when a model was asked and its reply was unusable."""

    def __init__(self, message: str, llm: LlmExchange | None = None) -> None:
        super().__init__(message)
        self.llm = llm


class BadSpec(ValueError):
    """A verify spec that no verifier can apply; the message names the field."""


@dataclass
class Judgement:
    passed: bool
    score: float | None = None
    details: str = ""
    llm: LlmExchange | None = None


@dataclass
class Subject:
    """One finished attempt, as a verifier sees it."""

    task: Task
    final_result: str
    steps: list[Step] = field(default_factory=list)
    claimed_success: bool = False

    @classmethod
    def of(cls, trajectory: Trajectory, verify: Any = None) -> Subject:
        """A stored trajectory as a subject (adp verify), its task rebuilt from the trajectory
        with `verify` as its spec."""
        recorded = trajectory.metadata.task if isinstance(trajectory.metadata.task, dict) else {}
        fields = {k: v for k, v in recorded.items() if k in TASK_FIELDS and v is not None}
        task = Task.model_validate(
            {
                **fields,
                "task_id": trajectory.task_id,
                "task_type": trajectory.task_type,
                "description": trajectory.description,
                "sample_index": trajectory.sample_index,
                "verify": verify,
            }
        )
        return cls(task, trajectory.final_result, list(trajectory.steps), trajectory.claimed)

    @property
    def final_code(self) -> str:
        """The agent's final code: the last python it ran without error, else the last it ran
        at all ("" when it ran none)."""
        runs = [(code, step.success) for step in self.steps for code in code_of(step)]
        good = [code for code, ok in runs if ok]
        return good[-1] if good else (runs[-1][0] if runs else "")


def code_of(step: Step) -> list[str]:
    """The python source(s) a step ran: code runtime steps, python tool calls, or python
    calls inside a multi-call step."""
    params = step.action_params if isinstance(step.action_params, dict) else {}
    if step.action_type in ("code_execution", "python") and isinstance(params.get("code"), str):
        return [params["code"]]
    if step.action_type == "tool_calls":
        return [
            c["arguments"]["code"]
            for c in params.get("calls", [])
            if isinstance(c, dict)
            and c.get("name") == "python"
            and isinstance(c.get("arguments"), dict)
            and isinstance(c["arguments"].get("code"), str)
        ]
    return []


@dataclass
class VerifyContext:
    """What verifiers may use: the provider chain (for a judge) and a python sandbox, both made
    only when a verifier first asks for them."""

    model_factory: Callable[[], Model] | None = None
    sandbox_factory: Callable[[], Sandbox] | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    _model: Model | None = None
    _sandbox: Sandbox | None = None

    def model(self) -> Model:
        if self._model is None:
            if self.model_factory is None:
                raise CannotVerify("no LLM is configured for the judge")
            try:
                self._model = self.model_factory()
            except Exception as exc:
                raise CannotVerify(f"no LLM for the judge: {exc}") from exc
        return self._model

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            factory = self.sandbox_factory
            if factory is None:
                from adp.runtimes.tools.sandbox import make_sandbox

                factory = make_sandbox
            try:
                self._sandbox = factory()
            except Exception as exc:
                raise CannotVerify(f"no python sandbox: {exc}") from exc
        return self._sandbox


@runtime_checkable
class Verifier(Protocol):
    name: ClassVar[str]

    def check(self, spec: dict[str, Any]) -> None:
        """Raise BadSpec if `spec` cannot be applied (called when tasks are produced)."""

    async def verify(
        self, spec: dict[str, Any], subject: Subject, ctx: VerifyContext
    ) -> Judgement: ...
