"""Runtime efficiency: code tasks whose one LLM reply is the final answer (no tool), a stub LLM
with a fixed 200 ms latency; LLM calls per second in the steady state against the ideal
(concurrency / 0.2 s) at concurrency 1, 8 and 64 in one process, then 1, 2 and 4 processes at
concurrency 16 each against one process.

Two checks make the figures readable on a shared machine: a bare aiohttp loop against the same
stub at concurrency 64 (the ceiling the stub and the machine allow, however fast the runtime),
and the runtime processes' own CPU time per LLM call in the steady state (from /proc: what a
call costs the runtime, whatever else the machine was doing; one core sustains 1000/x calls/s).
A last run at concurrency 64, not measured, is profiled with py-spy (the report's table).
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.core import Bench, bare_chat_calls
from bench.tasks import produce_tasks, steady_rate, stub_replies

KEY = "d"
NAME = "runtime"
TITLE = "Runtime efficiency: LLM calls/s vs concurrency / latency"
LATENCY = 0.2
SCRIPT = [{"replies": ["FINAL ANSWER: 42"]}]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    bench: Bench, name: str, processes: int, concurrency: int, seconds: float, profile: bool = False
) -> tuple[float, list, list, float]:
    url = bench.stub(LATENCY, SCRIPT)
    ideal = processes * concurrency / LATENCY
    n = max(20, int(ideal * seconds))
    before = stub_replies(url)
    names = [f"{name}-{i}" for i in range(processes)]
    pids = [
        bench.start(
            child,
            ["runtime", "code", "--concurrency", str(concurrency)],
            env={"ADP_LLM_BASE_URL": url},
        ).pid
        for child in names
    ]
    produce_tasks(bench, name, n)
    spy = None
    began = time.monotonic()
    xs, ys = [], []
    marks: list[tuple[float, int]] = []  # (runtime CPU s, calls) at 20% and 90% of the calls
    while True:
        bench.children.check()
        done = stub_replies(url) - before
        xs.append(time.monotonic() - began)
        ys.append(done)
        if len(marks) < 2 and done >= (0.2, 0.9)[len(marks)] * n:
            marks.append((sum(cpu_seconds(p) for p in pids), done))
            if profile and spy is None:  # the steady state: start-up's imports are behind
                spy = bench.profile(f"{KEY}-{name}", pids[0], seconds * 0.6)
        if done >= n or xs[-1] > 300:
            break
        await asyncio.sleep(0.25)
    bench.profile_done(f"{KEY}-{name}", spy)
    for child in names:
        bench.stop(child)
    calls = marks[-1][1] - marks[0][1] if len(marks) == 2 else 0
    cpu_ms = (marks[-1][0] - marks[0][0]) * 1000 / calls if calls else 0.0
    return steady_rate(xs, ys, 0.2, 0.9), xs, ys, cpu_ms


async def run(bench: Bench) -> None:
    seconds = 4 if bench.quick else max(3.0, 10 * bench.scale)
    ceiling = await bare_chat_calls(
        bench.stub(LATENCY, SCRIPT), 64, min(seconds, 4.0), "Print the number 1."
    )
    bench.figure(
        KEY,
        "bare aiohttp loop against the stub, concurrency 64",
        ceiling,
        "calls/s",
        f"ideal 64/{LATENCY}s",
        64 / LATENCY,
    )
    for c in (1, 8, 64):
        rate, xs, ys, cpu_ms = await measure(bench, f"rt-c{c}", 1, c, seconds)
        bench.figure(
            KEY,
            f"LLM calls/s, 1 process, concurrency {c}",
            rate,
            "calls/s",
            f"ideal {c}/{LATENCY}s",
            c / LATENCY,
            target=">= 0.9" if c == 64 else "",
        )
        bench.series(KEY, f"concurrency {c}", "throughput", xs, ys)
        if c == 64 and cpu_ms:
            bench.note(
                KEY,
                f"runtime CPU per LLM call at concurrency 64: {cpu_ms:.2f} ms "
                f"(one core sustains {1000 / cpu_ms:.0f} calls/s)",
            )
    # where a runtime's CPU goes at concurrency 64, in a run of its own: py-spy takes CPU from
    # the two cores the measured runs share (0.61 -> 0.45 of ideal with it attached)
    await measure(bench, "rt-c64-profiled", 1, 64, max(3.0, seconds / 2), profile=True)
    one = None
    for p in (1, 2, 4):
        rate, _, _, _ = await measure(bench, f"rt-p{p}", p, 16, seconds)
        if one is None:
            one = rate
            bench.figure(
                KEY,
                "LLM calls/s, 1 process x 16",
                rate,
                "calls/s",
                f"ideal 16/{LATENCY}s",
                16 / LATENCY,
            )
        else:
            bench.figure(
                KEY,
                f"LLM calls/s, {p} processes x 16",
                rate,
                "calls/s",
                "1 process x 16",
                one,
                target=">= 3.5" if p == 4 else "",
            )
