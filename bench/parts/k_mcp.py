"""One MCP tool call (the key-value server of the tests, written with the official SDK) over
stdio and over streamable HTTP, against the same call made in process (the SDK's in-process
client on the same server object: the same tool code and protocol handling, no transport),
p50 of each, interleaved. A last figure is the platform's own path over stdio (the agent Tool
of runtimes/tools/mcp: arguments, the SDK call, the observation) against the bare SDK call."""

from __future__ import annotations

import statistics
import sys
import time

from bench.core import Bench

KEY = "k"
NAME = "mcp"
TITLE = "MCP: one tool call over stdio and HTTP vs in process"
NEEDS_BROKER = False


async def _timed(n: int, call) -> list[float]:
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        took.append(time.perf_counter() - t0)
    return took


async def run(bench: Bench) -> None:
    from mcp import Client, StdioServerParameters

    from adp.core.sections import McpServerSettings
    from adp.core.settings import settings
    from adp.runtimes.tools.mcp import McpToolbox
    from tests.helpers import KV_SERVER, free_port, mcp_http_process
    from tests.mcp_kv_server import app

    n = bench.size(400, 60)
    args = {"key": "bench", "value": "x" * 64}
    port = free_port()
    command = [sys.executable, KV_SERVER, "--http", str(port)]
    stdio = StdioServerParameters(command=sys.executable, args=[KV_SERVER])
    with mcp_http_process(command, bench.work / "mcp-http.log", port) as url:
        async with Client(app) as local, Client(stdio) as piped, Client(url) as http:
            for client in (local, piped, http):  # warm: imports, connections, first listing
                await client.call_tool("put", args)
            base, over_stdio, over_http = [], [], []
            for _ in range(n // 20):  # interleaved rounds: load on the machine hits all three
                base += await _timed(20, lambda: local.call_tool("put", args))
                over_stdio += await _timed(20, lambda: piped.call_tool("put", args))
                over_http += await _timed(20, lambda: http.call_tool("put", args))
    p50 = statistics.median(base) * 1000
    name = "in process (SDK client on the server object) p50"
    bench.figure(
        KEY, "MCP call over stdio, p50", statistics.median(over_stdio) * 1000, "ms", name, p50
    )
    bench.figure(
        KEY, "MCP call over HTTP, p50", statistics.median(over_http) * 1000, "ms", name, p50
    )
    for label, series in (("in process", base), ("stdio", over_stdio), ("http", over_http)):
        bench.series(KEY, label, "cdf", series)

    box = McpToolbox(
        {"kv": McpServerSettings(command=sys.executable, args=[KV_SERVER])},
        log_dir=settings().log_dir / "mcp",
    )
    await box.start()
    try:
        async with box.tools_for(["kv.put"]) as (tool,), Client(stdio) as piped:
            await tool.run(args)
            ours, sdk = [], []
            for _ in range(n // 20):
                ours += await _timed(20, lambda: tool.run(args))
                sdk += await _timed(20, lambda: piped.call_tool("put", args))
    finally:
        await box.close()
    bench.figure(
        KEY,
        "platform MCP tool over stdio, p50",
        statistics.median(ours) * 1000,
        "ms",
        "bare SDK call over stdio p50",
        statistics.median(sdk) * 1000,
    )
    bench.note(KEY, f"{n} calls of kv.put per path, in interleaved rounds of 20")
