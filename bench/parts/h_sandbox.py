"""One python run in the bubblewrap sandbox (no network, private workdir, rlimits) against a
bare `python3 -c pass` started the same way: p50 of each, run one after the other. The bare run
uses the interpreter the sandbox runs programs with (the sandbox environment's, else Debian's
python3), so the ratio is the sandbox's own cost, not a difference between interpreters."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

from bench.core import Bench

KEY = "h"
NAME = "sandbox"
TITLE = "Sandbox: one python run vs bare python3 -c pass"
NEEDS_BROKER = False


async def run(bench: Bench) -> None:
    from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox

    n = 10 if bench.quick else 40
    sandbox, limits = make_sandbox(), SandboxLimits()
    env = getattr(sandbox, "env", None)
    python = env.python if env is not None else "/usr/bin/python3"
    if not os.path.exists(python):
        python = sys.executable
    bare, boxed = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(python, "-c", "pass")
        await proc.wait()
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = await sandbox.run_python("pass", limits)
        boxed.append(time.perf_counter() - t0)
        assert result.ok, result.observation()
    p50_bare, p50_box = statistics.median(bare), statistics.median(boxed)
    bench.figure(
        KEY, "sandbox python run, p50", p50_box * 1000, "ms", "python3 -c pass p50", p50_bare * 1000
    )
    bench.series(KEY, "sandbox run", "cdf", boxed)
    bench.series(KEY, "python3 -c pass", "cdf", bare)
    bench.note(
        KEY,
        f"{n} runs each, interleaved; backend {type(sandbox).__name__}; bare interpreter {python}",
    )
