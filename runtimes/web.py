"""The web runtime: the model browses real pages in Chromium through browser tools.

Tools: goto, click, fill, press, scroll, read_page, extract_links, back, finish (see
runtimes/tools/browser.py for what each returns). Each task gets a fresh browser context from
the runtime's BrowserPool, so no cookies or storage pass between tasks.

A task with constraints.start_url has that page opened before the first model call: the visible
text is the first step's observation (action_type "goto", llm None) and is in the first user
message. `max_steps` bounds the model calls; the start_url step is not one of them.

Options (RuntimeContext.options, else ADP_* environment):
  browsers (ADP_BROWSERS, 1): Chromium processes in the pool; pool: a shared BrowserPool
  (not closed by the runtime); text_limit (ADP_BROWSER_TEXT_LIMIT, 4000); nav_timeout,
  action_timeout (seconds); tool_protocol (ADP_TOOL_PROTOCOL: auto | tools | text); mcp (a
  started McpToolbox shared with other runtimes; default: the configured MCP servers, whose
  tools are offered beside the browser's, runtimes/tools/mcp/).
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from adp.core.settings import settings
from adp.runtimes.agent import Agent
from adp.runtimes.base import EmitStep, Outcome, RuntimeContext, StepReport
from adp.runtimes.tools.base import Tool
from adp.runtimes.tools.browser import BrowserOptions, BrowserPool, BrowserSession
from adp.runtimes.tools.mcp import toolbox_for
from adp.schemas.contracts import Task

SYSTEM_PROMPT = """You are a web agent operating a real Chromium browser to complete a task.
Use the browser tools to open pages, click links and buttons, fill in forms and read what the
pages show. Base your answer only on what the pages actually show; quote the relevant text."""


# ---- the browser tools a model sees ----------------------------------------------------------


def _s(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _first(args: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if args.get(name) not in (None, ""):
            return args[name]
    return default


def browser_tools(session: BrowserSession) -> list[Tool]:
    """The browser actions as agent tools (OpenAI function specs + what runs them). Common
    argument aliases (text/selector for target, value for text) are accepted."""

    def need(args: dict[str, Any], *names: str) -> str:
        value = _first(args, *names)
        if value is None:
            raise ValueError(f"missing argument {names[0]!r}")
        return str(value)

    return [
        Tool(
            "goto",
            "Open a URL in the browser; returns the page's visible text.",
            {
                "type": "object",
                "properties": {"url": _s("Absolute URL to open")},
                "required": ["url"],
            },
            lambda a: session.goto(need(a, "url", "href")),
        ),
        Tool(
            "click",
            "Click a link or button by its visible text, or an element by CSS selector; "
            "returns the resulting page's text.",
            {
                "type": "object",
                "properties": {"target": _s("Visible text or CSS selector")},
                "required": ["target"],
            },
            lambda a: session.click(need(a, "target", "text", "selector", "element", "name")),
        ),
        Tool(
            "fill",
            "Type text into an input field found by its label, placeholder, name or CSS "
            "selector (replacing what it held).",
            {
                "type": "object",
                "properties": {
                    "target": _s("Label, placeholder, name or CSS selector"),
                    "text": _s("Text to enter"),
                },
                "required": ["target", "text"],
            },
            lambda a: session.fill(
                need(a, "target", "selector", "label", "field", "name"),
                str(_first(a, "text", "value", default="")),
            ),
        ),
        Tool(
            "press",
            "Press a key (e.g. Enter, Tab, ArrowDown), optionally in a given field.",
            {
                "type": "object",
                "properties": {
                    "key": _s("Key name, e.g. Enter"),
                    "target": _s("Optional field to press it in"),
                },
                "required": ["key"],
            },
            lambda a: session.press(need(a, "key"), _first(a, "target", "selector")),
        ),
        Tool(
            "scroll",
            "Scroll the page up or down (by a number of pixels), or to the top/bottom.",
            {
                "type": "object",
                "properties": {
                    "direction": {"type": "string", "enum": ["up", "down", "top", "bottom"]},
                    "amount": {"type": "integer", "description": "Pixels (default: one screen)"},
                },
            },
            lambda a: session.scroll(
                str(_first(a, "direction", default="down")), _first(a, "amount", "pixels")
            ),
        ),
        Tool(
            "read_page",
            "Return the current page's URL, title and visible text.",
            {"type": "object", "properties": {}},
            lambda a: session.read_page(),
        ),
        Tool(
            "extract_links",
            "List the links on the current page as text -> absolute URL.",
            {"type": "object", "properties": {}},
            lambda a: session.extract_links(),
        ),
        Tool(
            "back",
            "Go back to the previous page.",
            {"type": "object", "properties": {}},
            lambda a: session.back(),
        ),
    ]


class WebRuntime:
    task_type: ClassVar[str] = "web"
    system_prompt: ClassVar[str] = SYSTEM_PROMPT

    def __init__(self, ctx: RuntimeContext):
        self.ctx, self.model = ctx, ctx.model
        opts, conf = ctx.options, settings()
        self.browser_options = BrowserOptions(
            text_limit=int(opts.get("text_limit") or conf.browser.text_limit),
            nav_timeout=float(opts.get("nav_timeout", 20.0)),
            action_timeout=float(opts.get("action_timeout", 5.0)),
        )
        self.protocol = str(opts.get("tool_protocol") or conf.runtime.tool_protocol)
        self._owns_pool = opts.get("pool") is None
        self.pool: BrowserPool = opts.get("pool") or BrowserPool(
            size=int(opts.get("browsers") or conf.browser.browsers),
            executable=opts.get("chromium"),
            headless=bool(opts.get("headless", True)),
        )
        self.mcp, self._owns_mcp = toolbox_for(opts)

    async def __aenter__(self) -> WebRuntime:
        await self.mcp.start()
        try:
            await self.pool.start()
        except BaseException:
            if self._owns_mcp:
                await self.mcp.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._owns_pool:
                await self.pool.close()
        finally:
            if self._owns_mcp:
                await self.mcp.close()

    def tools(self, browser: BrowserSession, workspace: Any = None) -> list[Tool]:
        """The tools one task gets (besides finish); `workspace`: see `workspace()`."""
        return browser_tools(browser)

    def workspace(self) -> AbstractAsyncContextManager[Any]:
        """A per-attempt working directory for tools that write files (none here)."""
        return contextlib.nullcontext()

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        async with (
            self.pool.session(self.browser_options) as browser,
            self.mcp.tools_for(task.expected_tools) as others,
        ):
            agent = Agent(
                self.model,
                [*self.tools(browser), *others],
                self.system_prompt,
                protocol=self.protocol,
            )
            context = None
            start_url = (task.constraints or {}).get("start_url")
            if start_url:
                url = str(start_url)
                started = time.time()
                result = await browser.goto(url)
                await emit(
                    StepReport(
                        action_type="goto",
                        action_params={"url": url},
                        observation=result.observation,
                        success=result.ok,
                        error=result.error,
                        timestamp=started,
                        duration=time.time() - started,
                        llm=None,
                    )
                )
                context = f"The browser has opened {url}. It shows:\n\n{result.observation}"
            return await agent.run(task, emit, context=context)
