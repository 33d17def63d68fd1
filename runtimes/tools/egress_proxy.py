"""The browser's egress proxy: every request Chromium makes goes through it, and it connects
only where the egress policy (egress.py) allows.

Chromium is told to use it for everything (Playwright's proxy setting, loopback included:
`<-loopback>`), so the policy holds for the first URL, every redirect, subresource, frame,
fetch, WebSocket and form post alike, whatever a page does. Plain-HTTP requests arrive as
absolute URIs (forwarded with Connection: close, one request per connection); HTTPS and
WebSockets as CONNECT tunnels, which the proxy joins without looking inside.

Before it connects, the proxy resolves the host name itself and checks the addresses; it then
connects to the address it checked, never resolving again, so a name that answers with a public
address first and a private one later (DNS rebinding) gains nothing. (A name on the allow-list
is the exception: it is connected to by name, as its operator vouched for it.)

A refused request is answered 403 with a one-line text (what Chromium shows as the page for a
plain-HTTP navigation; a refused CONNECT fails the navigation with ERR_TUNNEL_CONNECTION_FAILED)
and recorded in `refusals`, which the browser session turns into its observation's note. One
proxy per browser session (a loopback port of its own), so a session's refusals are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from adp.runtimes.tools.base import ToolResult
from adp.runtimes.tools.egress import Address, EgressPolicy

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # bytes of a request or response head
CONNECT_TIMEOUT = 15.0  # seconds to resolve and connect upstream
HEAD_TIMEOUT = 30.0  # seconds a client may take to send its request head
CHUNK = 64 * 1024
REFUSED_HEADER = "X-Adp-Egress"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te"}

Resolve = Callable[[str, int], Awaitable[list[Address]]]


async def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to, in the resolver's order (an address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


@dataclass(frozen=True)
class Refusal:
    url: str
    reason: str


class EgressProxy:
    """A forward HTTP proxy on a loopback port that enforces one EgressPolicy."""

    def __init__(self, policy: EgressPolicy, resolver: Resolve = resolve) -> None:
        self.policy, self.resolve = policy, resolver
        self.refusals: list[Refusal] = []  # the latest ones
        self.refused = 0  # how many in all
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port); returns the proxy's URL."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._open):
                writer.close()
            await server.wait_closed()

    # ---- one client connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            line, *headers = head.decode("latin-1").split("\r\n")
            method, target, version = line.split(" ", 2)
            if method.upper() == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, headers, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # not a request this proxy serves: the connection just ends
        except (ConnectionError, OSError):
            pass  # the browser went away
        finally:
            self._open.discard(writer)
            writer.close()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = _authority(target)
        upstream = await self._connect(host, port, f"https://{target}/", writer)
        if upstream is None:
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _join(reader, writer, *upstream)

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await _answer(writer, 400, f"the egress proxy forwards http:// URLs, not {target!r}")
            return
        upstream = await self._connect(url.hostname, url.port or 80, target, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = [h for h in headers if h and h.split(":", 1)[0].strip().lower() not in HOP_BY_HOP]
        up_writer.write(
            "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""]).encode(
                "latin-1"
            )
        )
        await up_writer.drain()
        body = asyncio.create_task(_copy(reader, up_writer))  # a request body, if any
        try:
            response = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(_closing(response))
            await _copy(up_reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            body.cancel()
            up_writer.close()

    async def _connect(
        self, host: str, port: int, url: str, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The upstream connection where the policy allows it; else the refusal is answered
        and recorded, and None returned."""
        where: str | Address = host
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self.policy.mode != "open" and self.policy.allows_name(host, port) is None:
                    decision = self.policy.decide(host, port, await self.resolve(host, port))
                    if not decision.allowed:
                        self._refuse(url, decision.reason)
                        await _answer(
                            writer,
                            403,
                            f"Refused by the browser's egress policy: {url} ({decision.reason}). "
                            "Private, loopback, link-local and cloud metadata addresses are off "
                            "limits unless the platform's operator allows them.",
                            refused=True,
                        )
                        return None
                    where = decision.address or host
                return await asyncio.open_connection(str(where), port, limit=HEAD_LIMIT)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else _os_error(exc)
            await _answer(writer, 502, f"The browser could not reach {host}:{port}: {why}.")
            return None

    def _refuse(self, url: str, reason: str) -> None:
        log.info("browser egress refused: %s (%s)", url, reason)
        self.refused += 1
        self.refusals.append(Refusal(url, reason))
        del self.refusals[:-100]  # a session's recent ones are what its observations need

    def since(self, seen: int) -> list[Refusal]:
        """The refusals after the first `seen` (as many of them as are kept)."""
        return self.refusals[len(self.refusals) - min(self.refused - seen, len(self.refusals)) :]

    def noted(self, result: ToolResult, seen: int) -> ToolResult:
        """A browser action's result with the requests refused since `seen` noted: the
        observation lists them; a navigation that failed on one says so as its error."""
        refused = self.since(seen)
        if not refused:
            return result
        lines = [f"- {r.url} ({r.reason})" for r in refused[:5]]
        if len(refused) > 5:
            lines.append(f"- and {len(refused) - 5} more")
        result.observation += (
            "\n[refused by the browser's egress policy:\n" + "\n".join(lines) + "]"
        )
        if not result.ok and (result.error == "HTTP 403" or "ERR_TUNNEL" in (result.error or "")):
            result.error = f"refused by the browser's egress policy: {refused[0].reason}"
        return result


def _os_error(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _authority(target: str) -> tuple[str, int]:
    """host and port of a CONNECT target (host:port, [v6]:port)."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad CONNECT target {target!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _closing(head: bytes) -> bytes:
    """A response head that tells the browser the connection closes after it."""
    line, *headers = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in HOP_BY_HOP]
    return "\r\n".join([line, *kept, "Connection: close", "", ""]).encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, text: str, refused: bool = False):
    body = (text + "\n").encode("utf-8")
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if refused:
        head.append(f"{REFUSED_HEADER}: refused")
    writer.write("\r\n".join([*head, "", ""]).encode("latin-1") + body)
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()


async def _join(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side closes."""
    ways = [
        asyncio.create_task(_copy(reader, up_writer)),
        asyncio.create_task(_copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for way in ways:
            way.cancel()
        up_writer.close()
