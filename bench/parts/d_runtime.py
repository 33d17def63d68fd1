"""Runtime efficiency: code tasks whose one LLM reply is the final answer (no tool), a stub LLM
with a fixed 200 ms latency; LLM calls per second in the steady state against the ideal
(concurrency / 0.2 s) at concurrency 1, 8 and 64 in one process, then 1, 2 and 4 processes at
concurrency 16 each against one process."""

from __future__ import annotations

import asyncio
import time

from bench.core import Bench
from bench.tasks import produce_tasks, steady_rate, stub_replies

KEY = "d"
NAME = "runtime"
TITLE = "Runtime efficiency: LLM calls/s vs concurrency / latency"
LATENCY = 0.2
SCRIPT = [{"replies": ["FINAL ANSWER: 42"]}]


async def measure(bench: Bench, name: str, processes: int, concurrency: int,
                  seconds: float) -> tuple[float, list, list]:
    url = bench.stub(LATENCY, SCRIPT)
    ideal = processes * concurrency / LATENCY
    n = max(20, int(ideal * seconds))
    before = stub_replies(url)
    names = [f"{name}-{i}" for i in range(processes)]
    for child in names:
        bench.start(child, ["runtime", "code", "--concurrency", str(concurrency)],
                    env={"ADP_LLM_BASE_URL": url})
    produce_tasks(bench, name, n)
    began = time.monotonic()
    xs, ys = [], []
    while True:
        bench.children.check()
        done = stub_replies(url) - before
        xs.append(time.monotonic() - began)
        ys.append(done)
        if done >= n or xs[-1] > 300:
            break
        await asyncio.sleep(0.25)
    for child in names:
        bench.stop(child)
    return steady_rate(xs, ys, 0.2, 0.9), xs, ys


async def run(bench: Bench) -> None:
    seconds = 4 if bench.quick else max(3.0, 10 * bench.scale)
    for c in (1, 8, 64):
        rate, xs, ys = await measure(bench, f"rt-c{c}", 1, c, seconds)
        bench.figure(KEY, f"LLM calls/s, 1 process, concurrency {c}", rate, "calls/s",
                     f"ideal {c}/{LATENCY}s", c / LATENCY,
                     target=">= 0.9" if c == 64 else "")
        bench.series(KEY, f"concurrency {c}", "throughput", xs, ys)
    one = None
    for p in (1, 2, 4):
        rate, _, _ = await measure(bench, f"rt-p{p}", p, 16, seconds)
        if one is None:
            one = rate
            bench.figure(KEY, "LLM calls/s, 1 process x 16", rate, "calls/s",
                         f"ideal 16/{LATENCY}s", 16 / LATENCY)
        else:
            bench.figure(KEY, f"LLM calls/s, {p} processes x 16", rate, "calls/s",
                         "1 process x 16", one, target=">= 3.5" if p == 4 else "")
