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

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }
