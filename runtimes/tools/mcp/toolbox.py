"""The MCP servers of one runtime process (`[mcp.servers.NAME]`, core/sections.py): started once
when the runtime starts, shared by all the tasks it runs at once, closed when it stops.

    toolbox = McpToolbox.from_settings()
    await toolbox.start()                       # DependencyUnavailable names a server that fails
    async with toolbox.tools_for(task) as tools:  # the MCP tools this task is offered
        ...
    await toolbox.close()

Which tools a task gets: when its expected_tools name MCP servers (`kv`) or tools (`kv.get`,
or the function name `kv__get`), exactly those; otherwise every tool of the servers configured
with `default = true` (the default). A server's `tools` allow-list always applies.

Sessions: a server with `session = "shared"` (the default) has one connection for the whole
process: cheap, and right for servers that answer each call on its own (search, a database, an
API). A server with `session = "task"` gets a connection of its own for each task that calls it
(for stdio a process of its own), opened at the task's first call and closed when the task
ends: for servers that keep state between calls (a browser, a scratch store), so that nothing
passes from one task to another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types

from adp.core.sections import McpServerSettings
from adp.core.settings import Settings, settings
from adp.runtimes.tools.base import Tool
from adp.runtimes.tools.mcp.connection import McpConnection
from adp.runtimes.tools.mcp.names import SEPARATOR, dotted_name, function_name
from adp.runtimes.tools.mcp.tools import mcp_tool
from adp.runtimes.tools.sandbox import SandboxLimits

log = logging.getLogger(__name__)


class McpToolbox:
    def __init__(
        self,
        servers: Mapping[str, McpServerSettings],
        *,
        log_dir: Path | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.servers = dict(servers)
        self.log_dir = log_dir
        self.limits = limits or SandboxLimits()
        self.connections = {name: self._connection(name) for name in self.servers}
        self.offered: dict[str, list[types.Tool]] = {}  # after start: each server's tools
        self._names: dict[
            str, tuple[str, str | None]
        ] = {}  # expected_tools entry -> (server, tool)

    @classmethod
    def from_settings(cls, conf: Settings | None = None) -> McpToolbox:
        conf = conf or settings()
        return cls(conf.mcp.servers, log_dir=conf.log_dir / "mcp")

    def _connection(self, name: str) -> McpConnection:
        errlog = self.log_dir / f"{name}.log" if self.log_dir is not None else None
        return McpConnection(name, self.servers[name], errlog)

    def __bool__(self) -> bool:
        return bool(self.servers)

    # ---- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every server and list its tools; the first that fails stops the others and
        raises DependencyUnavailable naming it."""
        if not self.servers or self.offered:
            return
        names = list(self.connections)
        results = await asyncio.gather(
            *(self.connections[n].open() for n in names), return_exceptions=True
        )
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            await self.close()
            raise failed
        for name, listed in zip(names, results):
            self.offered[name] = self._allowed(name, listed)  # type: ignore[arg-type]
            conf = self.servers[name]
            if conf.session == "task":  # listed: tasks open their own connections
                await self.connections[name].close()
            log.info(
                "MCP server %r (%s, %s session) offers %d tool(s): %s",
                name,
                conf.transport,
                conf.session,
                len(self.offered[name]),
                ", ".join(t.name for t in self.offered[name]) or "none",
            )
        self._index()

    def _allowed(self, name: str, listed: list[types.Tool]) -> list[types.Tool]:
        allow = self.servers[name].tools
        if allow is None:
            return list(listed)
        missing = sorted(set(allow) - {t.name for t in listed})
        if missing:
            log.warning(
                "MCP server %r does not list %s (its `tools` allow-list)", name, ", ".join(missing)
            )
        return [t for t in listed if t.name in allow]

    def _index(self) -> None:
        for server, tools in self.offered.items():
            self._names[server] = (server, None)
            for t in tools:
                self._names[dotted_name(server, t.name)] = (server, t.name)
                self._names[function_name(server, t.name)] = (server, t.name)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections.values()))
        self.offered = {}

    # ---- what a task is offered --------------------------------------------------------------

    def select(self, expected_tools: Iterable[str] = ()) -> dict[str, list[types.Tool]]:
        """server -> the tools a task with these expected_tools is offered."""
        named: dict[str, set[str] | None] = {}
        for entry in expected_tools:
            found = self._names.get(entry.strip())
            if found is None:
                if SEPARATOR in entry or "." in entry:
                    server = entry.replace(SEPARATOR, ".").split(".", 1)[0]
                    if server in self.offered:
                        log.warning(
                            "expected tool %r: MCP server %r has no such tool", entry, server
                        )
                continue
            server, tool = found
            if tool is None:
                named[server] = None
            elif named.get(server, set()) is not None:
                named.setdefault(server, set()).add(tool)  # type: ignore[union-attr]
        if not named:
            return {s: list(t) for s, t in self.offered.items() if self.servers[s].default}
        return {
            s: [t for t in self.offered[s] if wanted is None or t.name in wanted]
            for s, wanted in named.items()
        }

    @asynccontextmanager
    async def tools_for(self, expected_tools: Iterable[str] = ()) -> AsyncIterator[list[Tool]]:
        """The MCP tools of one task; per-task connections are closed when the block ends."""
        own: dict[str, McpConnection] = {}
        try:
            yield [
                mcp_tool(server, spec, self._caller(server, own), self.limits)
                for server, specs in self.select(expected_tools).items()
                for spec in specs
            ]
        finally:
            await asyncio.gather(*(c.close() for c in own.values()))

    def _caller(self, server: str, own: dict[str, McpConnection]) -> Any:
        if self.servers[server].session == "shared":
            return self.connections[server].call

        async def call(tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
            if server not in own:  # the task's first call of this server opens its connection
                own[server] = self._connection(server)
            return await own[server].call(tool, arguments)

        return call
