"""Tools from Model Context Protocol servers, through the official `mcp` SDK, in both directions.

- Using them (the client): toolbox.py starts the configured servers once per runtime process
  and gives each task its tools; connection.py is one server's session (restarts, timeouts);
  tools.py makes a server's tool an agent Tool; results.py turns what it returned into the
  observation and the step's files; names.py says what the model calls it.
- Serving ours (the server): serve.py offers any list of agent Tools (the python sandbox, the
  browser) as an MCP server over stdio or streamable HTTP, the same Tool objects the runtimes
  use (`adp mcp serve`).
"""

from __future__ import annotations

from typing import Any

from adp.runtimes.tools.mcp.toolbox import McpToolbox

__all__ = ["McpToolbox", "toolbox_for"]


def toolbox_for(options: dict[str, Any]) -> tuple[McpToolbox, bool]:
    """A runtime's MCP servers: options["mcp"] (a toolbox shared with others, which the runtime
    neither starts nor closes), else the configured ones. -> (toolbox, whether it is the
    runtime's own)."""
    given = options.get("mcp")
    if given is not None:
        return given, False
    return McpToolbox.from_settings(), True
