"""What the model calls an MCP tool: `SERVER__TOOL`.

The name that says it best, `server.tool`, is not a name every endpoint accepts: OpenAI's and
Anthropic's function names must match ^[a-zA-Z0-9_-]{1,64}$ (a dot is rejected with a 400), and
vLLM and llama.cpp servers follow OpenAI. So the function name joins the two with `__`, which
server names may not hold (core/sections.py), keeping the split unambiguous; `server.tool` is
still accepted from a model (an alias) and in a task's expected_tools. A tool name with other
characters, or a name past 64 characters, is made safe and keeps a short hash of the original,
so two tools never end up with one name.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "__"
MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server: str, tool: str) -> str:
    """The function name a model sees for `tool` of `server`."""
    plain = f"{server}{SEPARATOR}{tool}"
    safe = f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"
    if safe == plain and len(plain) <= MAX_LENGTH:
        return plain
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{safe[: MAX_LENGTH - len(digest) - 1]}_{digest}"


def dotted_name(server: str, tool: str) -> str:
    """How people write it: in docs, `adp mcp list` and expected_tools."""
    return f"{server}.{tool}"
