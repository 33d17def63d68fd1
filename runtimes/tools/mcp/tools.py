"""An MCP server's tool as an agent Tool (runtimes/tools/base.py): the function the model is
offered carries the server's own JSON schema under the name `SERVER__TOOL` (names.py); a call is
a step with action_type `mcp_call` and action_params {server, tool, arguments}; what the server
returned becomes the observation and the step's files (results.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types

from adp.runtimes.tools.base import Tool, ToolResult
from adp.runtimes.tools.mcp.connection import McpCallFailed
from adp.runtimes.tools.mcp.names import dotted_name, function_name
from adp.runtimes.tools.mcp.results import tool_result
from adp.runtimes.tools.sandbox import SandboxLimits

ACTION_TYPE = "mcp_call"
CallTool = Callable[[str, dict[str, Any]], Awaitable[types.CallToolResult]]


def parameters(spec: types.Tool) -> dict[str, Any]:
    """The tool's input schema as a function's parameters (an object schema, as endpoints ask)."""
    schema = dict(spec.input_schema or {})
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    return schema


def description(server: str, spec: types.Tool) -> str:
    text = (spec.description or spec.title or "").strip()
    return f"[{server}] {text}" if text else f"[{server}] the tool {spec.name}"


def mcp_tool(server: str, spec: types.Tool, call: CallTool, limits: SandboxLimits) -> Tool:
    """`call(tool, arguments)` reaches the server (a shared or a per-task connection)."""
    dotted = dotted_name(server, spec.name)

    async def run(arguments: dict[str, Any]) -> ToolResult:
        try:
            result = await call(spec.name, arguments)
        except McpCallFailed as exc:
            return ToolResult(f"{dotted} failed: {exc}", False, str(exc)[:500])
        return tool_result(result, spec.name, limits)

    return Tool(
        function_name(server, spec.name),
        description(server, spec),
        parameters(spec),
        run,
        action_type=ACTION_TYPE,
        action_params=lambda arguments: {
            "server": server,
            "tool": spec.name,
            "arguments": arguments,
        },
        aliases=(dotted,),
    )
