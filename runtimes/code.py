"""The code runtime: the model writes Python, the sandbox runs it, the output goes back.

Text protocol (works with any chat endpoint, tool calling or not): each reply holds either one
```python block to run, or a line `FINAL ANSWER: <answer>`. A failing run's traceback is the
observation, so the model can repair its code on the next step. The programs of one attempt share a
working directory; what they save there is kept as the step's artifacts, and the prompt says so and
names the libraries the sandbox has (runtimes/tools/sandbox/env.py). A reply with neither is taken
as the model's final answer in prose (small models often answer directly). The loop is the shared
one (runtimes/agent.py) in its "code" dialect; each run is a `code_execution` step.

Tools of the configured MCP servers (runtimes/tools/mcp/) are offered beside python: the prompt
lists them and the model calls one with a ```json {"tool": ..., "arguments": ...}``` block; each
call is an `mcp_call` step.

Options: sandbox ("auto" | "bwrap" | "docker"), sandbox_limits (SandboxLimits fields), mcp (a
started McpToolbox shared with other runtimes; default: the configured servers).
"""

from __future__ import annotations

from typing import ClassVar

from adp.runtimes.agent import Agent
from adp.runtimes.base import EmitStep, Outcome, RuntimeContext
from adp.runtimes.dialects import describe_tools
from adp.runtimes.tools.base import Tool
from adp.runtimes.tools.mcp import toolbox_for
from adp.runtimes.tools.python import python_tool
from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox
from adp.schemas.contracts import Task

SYSTEM_PROMPT = """You are a careful Python programmer solving a task step by step.
To run code, reply with a short thought and exactly one fenced block:
```python
print(...)
```
You will then see what the program printed (or its traceback) and can fix it.
Always print the values you need. When you know the answer, reply with one line:
FINAL ANSWER: <the answer>"""

SANDBOX_GUIDE = """The sandbox runs Python 3 without network access. {libraries}
Files you save in the working directory (plots with plt.savefig("name.png"), CSV, JSON, ...)
are kept with your answer, and your later programs can read them; the output lists what was
saved. There is no display: a plot that is only shown (plt.show()) is not kept."""

MCP_GUIDE = """Besides Python you can use these tools:
{tools}

To use one, reply with a short thought and exactly one JSON block (instead of a python block):
```json
{{"tool": "<tool name>", "arguments": {{...}}}}
```
You will then see what the tool returned."""


def system_prompt(libraries: list[str] | None) -> str:
    """The prompt, naming the libraries the sandbox's environment really has."""
    if libraries:
        have = f"Besides the standard library you can import {', '.join(libraries)}."
    else:
        have = "Only the standard library is installed."
    return f"{SYSTEM_PROMPT}\n\n{SANDBOX_GUIDE.format(libraries=have)}"


def with_tools(prompt: str, tools: list[Tool]) -> str:
    """The prompt, plus the other tools (MCP) a task is offered and how to call them."""
    if not tools:
        return prompt
    return f"{prompt}\n\n{MCP_GUIDE.format(tools=describe_tools([t.spec() for t in tools]))}"


class CodeRuntime:
    task_type: ClassVar[str] = "code"

    def __init__(self, ctx: RuntimeContext):
        self.model = ctx.model
        self.sandbox = make_sandbox(ctx.options.get("sandbox", "auto"))
        self.limits = SandboxLimits(**ctx.options.get("sandbox_limits", {}))
        env = getattr(self.sandbox, "env", None)
        self.system_prompt = system_prompt(env.libraries() if env is not None else None)
        self.mcp, self._owns_mcp = toolbox_for(ctx.options)

    async def __aenter__(self) -> CodeRuntime:
        await self.mcp.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_mcp:
            await self.mcp.close()

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        # one working directory per attempt: later steps see the files earlier ones wrote
        async with (
            self.sandbox.workspace() as workspace,
            self.mcp.tools_for(task.expected_tools) as others,
        ):
            tool = python_tool(
                self.sandbox, self.limits, workspace=workspace, action_type="code_execution"
            )
            prompt = with_tools(self.system_prompt, others)
            agent = Agent(self.model, [tool, *others], prompt, protocol="code")
            return await agent.run(task, emit)
