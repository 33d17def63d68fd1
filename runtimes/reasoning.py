"""The reasoning runtime: multi-step problems solved with a browser and a Python sandbox.

Tools: the web runtime's browser tools (goto, click, fill, press, scroll, read_page,
extract_links, back), `python` {"code"} (runs in the sandbox of runtimes/tools/sandbox/; the
observation is what the program printed, or its traceback), the tools of the configured MCP
servers (`SERVER__TOOL`, runtimes/tools/mcp/), and finish {"answer"}. The model's
own text of each step (and any reasoning_content the endpoint returns) is kept as the step's
`thinking`. The browser context is created only if the task uses a browser tool; a
constraints.start_url is opened first, as in the web runtime.

Options: those of runtimes/web.py, plus sandbox ("auto" | "bwrap" | "docker") and
sandbox_limits (SandboxLimits fields).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import ClassVar

from adp.runtimes.base import RuntimeContext
from adp.runtimes.tools.base import Tool
from adp.runtimes.tools.browser import BrowserSession
from adp.runtimes.tools.python import python_tool
from adp.runtimes.tools.sandbox import SandboxLimits, Workspace, make_sandbox
from adp.runtimes.web import WebRuntime, browser_tools

SYSTEM_PROMPT = """You are a careful problem solver. Think step by step and say briefly what you
are doing and why before each action. Use the `python` tool to compute (print every value you
need), the browser tools to look things up on web pages, and any other tool you are offered for
what it says it does. Check results before answering."""


class ReasoningRuntime(WebRuntime):
    task_type: ClassVar[str] = "reasoning"
    system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def __init__(self, ctx: RuntimeContext):
        super().__init__(ctx)
        self.sandbox = make_sandbox(ctx.options.get("sandbox", "auto"))
        self.limits = SandboxLimits(**ctx.options.get("sandbox_limits", {}))

    def tools(self, browser: BrowserSession, workspace: Workspace | None = None) -> list[Tool]:
        return [
            python_tool(self.sandbox, self.limits, workspace=workspace),
            *browser_tools(browser),
        ]

    def workspace(self) -> AbstractAsyncContextManager[Workspace | None]:
        return self.sandbox.workspace()
