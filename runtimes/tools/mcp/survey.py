"""`adp mcp list`: connect to every configured server and say what each offers, or in one line
why it cannot (each server on its own: one that fails does not hide the others)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adp.core.errors import AdpError
from adp.core.sections import McpServerSettings
from adp.runtimes.tools.mcp.connection import McpConnection
from adp.runtimes.tools.mcp.names import dotted_name, function_name
from adp.runtimes.tools.mcp.tools import description, parameters


@dataclass
class ServerReport:
    name: str
    transport: str
    where: str
    error: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "where": self.where,
            "ok": self.error is None,
            "error": self.error,
            "tools": self.tools,
        }


async def survey_one(name: str, conf: McpServerSettings, log_dir: Path | None) -> ServerReport:
    report = ServerReport(name, conf.transport, conf.describe())
    connection = McpConnection(name, conf, log_dir / f"{name}.log" if log_dir else None)
    try:
        listed = await connection.open()
    except AdpError as exc:
        report.error = str(exc)
        return report
    finally:
        await connection.close()
    allow = conf.tools
    for spec in listed:
        report.tools.append(
            {
                "name": dotted_name(name, spec.name),
                "function": function_name(name, spec.name),
                "offered": allow is None or spec.name in allow,
                "description": description(name, spec),
                "input_schema": parameters(spec),
            }
        )
    return report


async def survey(servers: dict[str, McpServerSettings], log_dir: Path | None) -> list[ServerReport]:
    return list(
        await asyncio.gather(*(survey_one(n, c, log_dir) for n, c in sorted(servers.items())))
    )
