"""An MCP server written with the official SDK, for the tests and the benchmark: a small
key-value store, a tool that returns an image (a real PNG it draws), one that returns a file
as an embedded resource, and tools that fail the ways servers fail (crash, hang, error).

    python tests/mcp_kv_server.py                      # stdio
    python tests/mcp_kv_server.py --http PORT          # streamable HTTP on 127.0.0.1:PORT/mcp
    python tests/mcp_kv_server.py --fail-at-start      # exits before it speaks MCP

`secret` returns whether the variable KV_TOKEN reached the server (its env entry), never the
value."""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
import zlib

import mcp_types as types
from mcp.server.mcpserver import Image, MCPServer

app = MCPServer("kv", instructions="A key-value store for tests.", log_level="WARNING")
STORE: dict[str, str] = {}


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@app.tool()
def put(key: str, value: str) -> str:
    """Store a value under a key."""
    STORE[key] = value
    return f"stored {key}"


@app.tool()
def get(key: str) -> str:
    """The value stored under a key."""
    if key not in STORE:
        raise LookupError(f"no key {key!r}")
    return STORE[key]


@app.tool()
def keys() -> list[str]:
    """Every key, sorted."""
    return sorted(STORE)


@app.tool()
def swatch(red: int, green: int, blue: int, size: int = 8) -> Image:
    """A square PNG image of one colour."""
    return Image(data=png(size, size, (red, green, blue)), format="png")


@app.tool()
def export_csv() -> types.EmbeddedResource:
    """The store as a CSV file (an embedded resource)."""
    text = "key,value\n" + "".join(f"{k},{v}\n" for k, v in sorted(STORE.items()))
    contents = types.TextResourceContents(
        uri="file:///kv/store.csv", mime_type="text/csv", text=text
    )
    return types.EmbeddedResource(type="resource", resource=contents)


@app.tool()
def secret() -> str:
    """Whether KV_TOKEN reached this server."""
    return "KV_TOKEN is set" if os.environ.get("KV_TOKEN") else "KV_TOKEN is missing"


@app.tool()
def pid() -> int:
    """The server's process id (tells a restarted server from the first)."""
    return os.getpid()


@app.tool()
def crash() -> str:
    """Exit the server process at once (a crash)."""
    os._exit(3)


@app.tool()
async def nap(seconds: float) -> str:
    """Sleep without blocking the server, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@app.tool()
async def freeze(seconds: float) -> str:
    """Block the whole server (its event loop: it answers nothing) for a while."""
    time.sleep(seconds)
    return "thawed"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, help="serve streamable HTTP on this port")
    parser.add_argument("--fail-at-start", action="store_true")
    args = parser.parse_args()
    if args.fail_at_start:
        print("kv: cannot open its database", file=sys.stderr)
        sys.exit(1)
    if args.http:
        app.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        app.run()


if __name__ == "__main__":
    main()
