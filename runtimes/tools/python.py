"""The python sandbox as an agent tool: {"code"} -> what the program printed (or its traceback)."""

from __future__ import annotations

from typing import Any

from adp.runtimes.tools.base import Tool, ToolResult
from adp.runtimes.tools.sandbox import ExecResult, Sandbox, SandboxLimits, Workspace

DESCRIPTION = (
    "Run a Python 3 program in a sandbox (no network) and return what it printed. "
    "Print every value you need."
)


def error_line(result: ExecResult) -> str | None:
    """Why a run failed, in one line: the exception of its traceback, else the exit status."""
    if result.ok:
        return None
    if result.timed_out:
        return "timeout"
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else f"exit code {result.exit_code}"


def python_tool(
    sandbox: Sandbox,
    limits: SandboxLimits,
    *,
    workspace: Workspace | None = None,
    action_type: str | None = None,
    description: str = DESCRIPTION,
) -> Tool:
    """`workspace`: the attempt's working directory (files persist between runs and are
    collected as artifacts after each); None: each run in a fresh, empty one."""

    async def run(args: dict[str, Any]) -> ToolResult:
        code = args.get("code") or args.get("source") or args.get("_raw")
        if not isinstance(code, str) or not code.strip():
            return ToolResult(
                "python needs a non-empty 'code' string.", False, "missing argument 'code'"
            )
        result = await sandbox.run_python(code, limits, workspace)
        return ToolResult(result.observation(), result.ok, error_line(result), result.files)

    return Tool(
        "python",
        description,
        {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source"}},
            "required": ["code"],
        },
        run,
        action_type,
    )
