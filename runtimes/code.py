"""The code runtime: the model writes Python, the sandbox runs it, the output goes back.

Text protocol (works with any chat endpoint, tool calling or not): each reply holds either one
```python block to run, or a line `FINAL ANSWER: <answer>`. A failing run's traceback is the
observation, so the model can repair its code on the next step. A reply with neither is taken
as the model's final answer in prose (small models often answer directly).
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from adp.schemas.contracts import ErrorType, Step, Task
from adp.runtimes.base import EmitStep, Outcome, RuntimeContext
from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox

SYSTEM_PROMPT = """You are a careful Python programmer solving a task step by step.
To run code, reply with a short thought and exactly one fenced block:
```python
print(...)
```
You will then see what the program printed (or its traceback) and can fix it.
Always print the values you need. When you know the answer, reply with one line:
FINAL ANSWER: <the answer>"""

CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
FINAL_ANSWER = re.compile(r"FINAL ANSWER:\s*(.*)", re.DOTALL | re.IGNORECASE)


def parse_reply(text: str) -> tuple[str, str]:
    """-> (kind, payload): ("final", answer) | ("code", source)."""
    final = FINAL_ANSWER.search(text)
    code = CODE_BLOCK.search(text)
    if final and (not code or final.start() < code.start()):
        return "final", final.group(1).strip()
    if code and code.group(1).strip():
        return "code", code.group(1)
    return "final", text.strip()


def thinking_of(text: str) -> str | None:
    """The prose around the action: what the model said it was doing."""
    prose = FINAL_ANSWER.sub("", CODE_BLOCK.sub("", text)).strip()
    return prose or None


class CodeRuntime:
    task_type: ClassVar[str] = "code"

    def __init__(self, ctx: RuntimeContext):
        self.model = ctx.model
        self.sandbox = make_sandbox(ctx.options.get("sandbox", "auto"))
        self.limits = SandboxLimits(**ctx.options.get("sandbox_limits", {}))

    async def __aenter__(self) -> "CodeRuntime":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task.description},
        ]
        for _ in range(task.max_steps):
            started = time.time()
            reply = await self.model.chat(messages)
            kind, payload = parse_reply(reply.content)
            step = dict(timestamp=started, thinking=thinking_of(reply.content), llm=reply.exchange)
            if kind == "final":
                await emit(Step(step_id=1, action_type="final_answer",
                                action_params={"answer": payload}, observation="", success=True,
                                duration=time.time() - started, **step))
                return Outcome(True, payload)
            result = await self.sandbox.run_python(payload, self.limits)
            observation = result.observation()
            await emit(Step(step_id=1, action_type="code_execution",
                            action_params={"code": payload}, observation=observation,
                            success=result.ok, error=None if result.ok else _error_line(result),
                            duration=time.time() - started, **step))
            messages.append(reply.message or {"role": "assistant", "content": reply.content})
            messages.append({"role": "user", "content": f"Observation:\n{observation}"})
        return Outcome(False, "", f"no final answer within {task.max_steps} steps",
                       ErrorType.max_steps)


def _error_line(result: Any) -> str:
    if result.timed_out:
        return "timeout"
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else f"exit code {result.exit_code}"
