"""One live MCP client session to one configured server, through the official SDK's `Client`.

The SDK's transports are anyio context managers that must be entered and left by one task, so
each connection lives in a task of its own (`_own`), which opens the session, lists the tools,
hands the client over and waits to be told to close. Calls come from any task of the runtime.

Faults, and what a call then records (it never raises for them: the caller gets McpCallFailed,
the agent an honest error observation):
- the server crashed or the connection broke: the call fails ("connection closed") and the
  connection is marked broken; the next call starts the server again (a new process for
  stdio, a new session for HTTP);
- the call outlives `timeout`: it fails as a timeout; a ping then tells whether the whole
  server hangs (the protocol of 2026-07-28 has no ping: a tools/list past any cache is the
  probe), and one that does not answer it is restarted for the next call too;
- the server never starts: `open` raises DependencyUnavailable, one line naming the server and
  what went wrong (for stdio, with the last line the server wrote to its stderr log).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

# The SDK's public API has no other way to give the HTTP transport headers and its default
# timeouts together: this factory is what its own session group uses.
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from adp import __version__
from adp.core.errors import DependencyUnavailable
from adp.core.sections import McpServerSettings

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0  # seconds a server that timed out a call has to answer the probe
CLOSE_TIMEOUT = 10.0  # the SDK bounds its own shutdown (stdin close, SIGTERM, SIGKILL) below this
CLIENT_INFO = types.Implementation(name="adp", version=__version__)


class McpCallFailed(Exception):
    """A call that got no result from its server (crash, broken connection, timeout); str() is
    the one-line reason an observation gives."""


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the SDK's task groups wrap what really failed)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    exc = root_cause(exc)
    if isinstance(exc, MCPError):
        return exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def last_line(path: Path | None) -> str | None:
    """The last line a stdio server wrote to its stderr log (why it did not start)."""
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    found = [ln for ln in lines if ln]
    return found[-1][:300] if found else None


class McpConnection:
    """A client session to server `name`, opened by `open()` and reopened after a crash."""

    def __init__(self, name: str, conf: McpServerSettings, errlog: Path | None = None) -> None:
        self.name, self.conf, self.errlog = name, conf, errlog
        self.tools: list[types.Tool] = []
        self.restarts = 0
        self._client: Client | None = None
        self._generation = 0  # which opening of the server the current client is
        self._broken = False
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    # ---- opening and closing ---------------------------------------------------------------

    async def open(self) -> list[types.Tool]:
        """Start the server (stdio) or connect (HTTP) and list its tools; DependencyUnavailable
        names the server when it cannot."""
        async with self._lock:
            await self._start()
        return self.tools

    async def _start(self) -> None:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._own(ready, self._closing), name=f"mcp-{self.name}")
        try:
            client = await asyncio.wait_for(asyncio.shield(ready), self.conf.startup_timeout)
        except BaseException as exc:
            await self._stop()
            raise DependencyUnavailable(self._why_not(exc)) from None
        self._client, self._broken = client, False
        self._generation += 1

    def _why_not(self, exc: BaseException) -> str:
        where = f"MCP server {self.name!r} ({self.conf.describe()})"
        if isinstance(root_cause(exc), TimeoutError | asyncio.TimeoutError):
            reason = f"did not answer within {self.conf.startup_timeout:g} s"
        elif self.conf.transport == "stdio":
            reason = f"did not start: {describe(exc)}"
        else:
            reason = f"cannot be reached: {describe(exc)}"
        said = last_line(self.errlog) if self.conf.transport == "stdio" else None
        return f"{where} {reason}" + (f" (it said: {said})" if said else "")

    async def _own(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        try:
            async with AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = Client(transport, client_info=CLIENT_INFO)
                await stack.enter_async_context(client)
                self.tools = await self._list_tools(client)
                ready.set_result(client)
                await closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r: its session ended: %s", self.name, describe(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _transport(self, stack: AsyncExitStack) -> Any:
        conf = self.conf
        if conf.command is not None:
            errlog = None
            if self.errlog is not None:
                self.errlog.parent.mkdir(parents=True, exist_ok=True)
                errlog = stack.enter_context(self.errlog.open("a"))
            params = StdioServerParameters(
                command=conf.command,
                args=list(conf.args),
                env={k: v.get_secret_value() for k, v in conf.env.items()},
                cwd=conf.cwd,
            )
            return stdio_client(params, errlog=errlog) if errlog else stdio_client(params)
        headers = {k: v.get_secret_value() for k, v in conf.headers.items()}
        http = await stack.enter_async_context(create_mcp_http_client(headers=headers or None))
        return streamable_http_client(str(conf.url), http_client=http)

    async def _list_tools(self, client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor = None
        for _ in range(100):  # a paginator that never ends must not hang the start-up
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _stop(self) -> None:
        owner, self._owner, self._client = self._owner, None, None
        if owner is None:
            return
        if self._closing is not None:
            self._closing.set()
        try:
            await asyncio.wait_for(owner, CLOSE_TIMEOUT)
        except BaseException:  # it ended badly or hangs: it is gone either way
            owner.cancel()

    async def close(self) -> None:
        async with self._lock:
            await self._stop()

    # ---- calls -------------------------------------------------------------------------------

    async def _live(self) -> tuple[Client, int]:
        async with self._lock:
            if self._client is None or self._broken:
                if self._owner is not None:
                    log.warning("MCP server %r stopped answering: restarting it", self.name)
                    self.restarts += 1
                await self._stop()
                await self._start()
            assert self._client is not None
            return self._client, self._generation

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """The server's result of one tool call; McpCallFailed when it gave none."""
        try:
            client, generation = await self._live()
        except DependencyUnavailable as exc:
            raise McpCallFailed(str(exc)) from None
        timeout = self.conf.timeout
        try:
            async with asyncio.timeout(timeout + PROBE_TIMEOUT):
                return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == types.REQUEST_TIMEOUT:
                await self._check_alive(client, generation)
                raise McpCallFailed(f"{tool} timed out after {timeout:g} s") from None
            if exc.code == types.CONNECTION_CLOSED:
                self._mark_broken(generation)
                raise McpCallFailed(f"the connection to MCP server {self.name!r} closed") from None
            raise McpCallFailed(f"MCP error {exc.code}: {exc.message}") from None
        except TimeoutError:
            self._mark_broken(generation)
            raise McpCallFailed(f"{tool} timed out after {timeout:g} s") from None
        except (OSError, EOFError, BaseExceptionGroup) as exc:
            self._mark_broken(generation)
            raise McpCallFailed(f"MCP server {self.name!r}: {describe(exc)}") from None

    async def _check_alive(self, client: Client, generation: int) -> None:
        """After a timed-out call: a server that does not answer the probe hangs as a whole."""
        try:
            await asyncio.wait_for(client.list_tools(cache_mode="bypass"), PROBE_TIMEOUT)
        except Exception:
            log.warning("MCP server %r does not answer after a timeout", self.name)
            self._mark_broken(generation)

    def _mark_broken(self, generation: int) -> None:
        if generation == self._generation:
            self._broken = True
