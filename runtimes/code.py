"""The code runtime: the model writes Python, the sandbox runs it, the output goes back.

Text protocol (works with any chat endpoint, tool calling or not): each reply holds either one
```python block to run, or a line `FINAL ANSWER: <answer>`. A failing run's traceback is the
observation, so the model can repair its code on the next step. A reply with neither is taken
as the model's final answer in prose (small models often answer directly). The loop is the
shared one (runtimes/agent.py) in its "code" dialect; each run is a `code_execution` step.

Options: sandbox ("auto" | "bwrap" | "docker"), sandbox_limits (SandboxLimits fields).
"""

from __future__ import annotations

from typing import ClassVar

from adp.schemas.contracts import Task
from adp.runtimes.agent import Agent
from adp.runtimes.base import EmitStep, Outcome, RuntimeContext
from adp.runtimes.tools.python import python_tool
from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox

SYSTEM_PROMPT = """You are a careful Python programmer solving a task step by step.
To run code, reply with a short thought and exactly one fenced block:
```python
print(...)
```
You will then see what the program printed (or its traceback) and can fix it.
Always print the values you need. When you know the answer, reply with one line:
FINAL ANSWER: <the answer>"""


class CodeRuntime:
    task_type: ClassVar[str] = "code"

    def __init__(self, ctx: RuntimeContext):
        self.model = ctx.model
        self.sandbox = make_sandbox(ctx.options.get("sandbox", "auto"))
        self.limits = SandboxLimits(**ctx.options.get("sandbox_limits", {}))
        self.agent = Agent(self.model, [python_tool(self.sandbox, self.limits,
                                                    action_type="code_execution")],
                           SYSTEM_PROMPT, protocol="code")

    async def __aenter__(self) -> "CodeRuntime":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        return await self.agent.run(task, emit)
