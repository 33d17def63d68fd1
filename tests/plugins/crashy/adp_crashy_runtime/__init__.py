"""A runtime that takes its whole process down (SIGKILL, no cleanup) on tasks whose description
contains POISON, the way a segfaulting native library or the OOM killer would; every other
task finishes in one step. Used by tests/test_poison.py."""

from __future__ import annotations

import os
import signal
import time
from typing import ClassVar

from adp.runtimes.base import EmitStep, Outcome, RuntimeContext, StepReport
from adp.schemas.contracts import Task


class CrashyRuntime:
    task_type: ClassVar[str] = "code"

    def __init__(self, ctx: RuntimeContext):
        pass

    async def __aenter__(self) -> CrashyRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        if "POISON" in task.description:
            os.kill(os.getpid(), signal.SIGKILL)
        now = time.time()
        await emit(
            StepReport(
                action_type="echo",
                action_params={"text": task.description},
                observation=task.description,
                success=True,
                timestamp=now,
                duration=0.0,
            )
        )
        return Outcome(True, task.description)
