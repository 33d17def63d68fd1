"""What every tool an agent can call is: a name, a JSON-schema of its arguments, and an async
function that really acts and returns what it observed (ToolResult). Nothing is invented: the
observation is exactly what the tool returned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ToolResult:
    """What a tool really returned: the observation text, whether it worked, and why not;
    `files`: the files it wrote (sandbox CollectedFile records), kept with the step."""

    observation: str
    ok: bool = True
    error: str | None = None
    files: tuple[Any, ...] = ()


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    run: Callable[[dict[str, Any]], Awaitable[ToolResult]]
    # the step's action_type when this tool runs (default: the tool's name)
    action_type: str | None = None
    # the step's action_params for a call's arguments (default: the arguments themselves)
    action_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # other names a model may call it by (e.g. an MCP tool's `server.tool`)
    aliases: tuple[str, ...] = ()

    def params(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.action_params(arguments) if self.action_params else arguments

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }
