"""The platform's own tools served over MCP (`adp mcp serve python|browser`), so that any MCP
client (another agent framework, a desktop assistant) can use them.

`tool_server` offers a list of agent Tools (runtimes/tools/base.py) as an MCP server: the very
Tool objects the runtimes give their agents (python_tool, browser_tools), so a program runs in
the same sandbox and a page is read by the same code whichever side asks. A call's result is
its observation as text, each file it kept as an image (image/*) or an embedded resource (the
bytes, `file:///work/NAME`), and `isError` when the tool failed.

State: one server process holds one sandbox workspace (the files of earlier calls stay for the
later ones) or one browser context, shared by every client of that process; start a server per
client where clients must not see each other's files or pages (over stdio that is the rule).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from adp import __version__
from adp.runtimes.tools.base import Tool, ToolResult

log = logging.getLogger(__name__)
TEXT_TYPES = ("text/", "application/json", "application/xml", "image/svg+xml")


def file_content(f: Any) -> types.ImageContent | types.EmbeddedResource:
    """One kept file of a tool result as MCP content."""
    if f.media_type.startswith("image/") and f.media_type != "image/svg+xml":
        return types.ImageContent(
            type="image", data=base64.b64encode(f.data).decode(), mime_type=f.media_type
        )
    uri = f"file:///work/{f.name}"
    contents: types.TextResourceContents | types.BlobResourceContents
    text = _text(f.data) if f.media_type.startswith(TEXT_TYPES) else None
    if text is not None:
        contents = types.TextResourceContents(uri=uri, mime_type=f.media_type, text=text)
    else:
        blob = base64.b64encode(f.data).decode()
        contents = types.BlobResourceContents(uri=uri, mime_type=f.media_type, blob=blob)
    return types.EmbeddedResource(type="resource", resource=contents)


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def call_result(result: ToolResult) -> types.CallToolResult:
    content: list[Any] = [types.TextContent(type="text", text=result.observation)]
    content += [file_content(f) for f in result.files if f.kept]
    return types.CallToolResult(content=content, is_error=not result.ok)


def tool_server(name: str, tools: list[Tool], instructions: str | None = None) -> Server[Any]:
    """An MCP server offering `tools`."""
    by_name = {t.name: t for t in tools}
    listing = types.ListToolsResult(
        tools=[
            types.Tool(name=t.name, description=t.description, input_schema=t.parameters)
            for t in tools
        ]
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return listing

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            known = ", ".join(by_name)
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r} ({known})")
        try:
            result = await tool.run(dict(params.arguments or {}))
        except Exception as exc:  # a bad argument is the caller's error, told as a result
            result = ToolResult(f"{params.name} failed: {exc}", False, str(exc))
        log.info("%s: %s", params.name, "ok" if result.ok else f"failed: {result.error}")
        return call_result(result)

    def input_schema(tool: str) -> dict[str, Any] | None:
        found = by_name.get(tool)
        return found.parameters if found is not None else None

    return Server(
        name,
        version=__version__,
        instructions=instructions,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one client on this process's stdin/stdout until it closes them."""
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Server[Any], host: str, port: int, path: str = "/mcp") -> None:
    """Serve streamable HTTP at http://HOST:PORT/PATH until cancelled."""
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()


# ---- the servers `adp mcp serve` offers --------------------------------------------------------

PYTHON_INSTRUCTIONS = (
    "A Python 3 sandbox without network. Files a program saves in its working directory are "
    "returned with the result and stay there for the programs that follow."
)
BROWSER_INSTRUCTIONS = (
    "A Chromium browser: open pages, click, fill in forms and read what they show. The page "
    "stays open between calls."
)


@asynccontextmanager
async def python_server(backend: str = "auto") -> AsyncIterator[Server[Any]]:
    """The python tool of the code and reasoning runtimes, with one working directory for the
    server's life."""
    from adp.runtimes.tools.python import python_tool
    from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox

    sandbox = make_sandbox(backend)
    async with sandbox.workspace() as workspace:
        tool = python_tool(sandbox, SandboxLimits(), workspace=workspace)
        yield tool_server("adp-python", [tool], PYTHON_INSTRUCTIONS)


@asynccontextmanager
async def browser_server() -> AsyncIterator[Server[Any]]:
    """The web runtime's browser tools, on one browser context for the server's life."""
    from adp.core.settings import settings
    from adp.runtimes.tools.browser import BrowserOptions, BrowserPool
    from adp.runtimes.web import browser_tools

    options = BrowserOptions(text_limit=settings().browser.text_limit)
    async with BrowserPool(size=1) as pool, pool.session(options) as browser:
        yield tool_server("adp-browser", browser_tools(browser), BROWSER_INSTRUCTIONS)


SERVED = {"python": python_server, "browser": browser_server}
