"""The sandbox's scientific environment (runtimes/tools/sandbox/env.py): what it costs at start-up.

- empty program: `pass` in the sandbox with its environment against the same sandbox running
  Debian's bare python3 (as before the environment existed): a program that imports nothing must
  not get slower (ratio about 1.0);
- import pandas: in the sandbox against the environment's own interpreter run directly on the
  host (no bubblewrap, no limits): what the sandbox adds to a real import;
- import pandas against the empty program, both in the sandbox: the cost of the import itself.
Medians of sequential runs, interleaved, after one warm-up run each.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.core import Bench

KEY = "j"
NAME = "sandbox-env"
TITLE = "Sandbox environment: empty run vs bare python3, import pandas inside vs outside"
NEEDS_BROKER = False


async def _timed(coro) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


async def run(bench: Bench) -> None:
    from adp.runtimes.tools.sandbox import SandboxLimits
    from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox
    from adp.runtimes.tools.sandbox.env import ensure_env

    env = ensure_env()
    if env is None:
        bench.note(KEY, "ADP_SANDBOX_ENV=none: no sandbox environment to measure")
        return
    n = 5 if bench.quick else 15
    limits = SandboxLimits(wall_timeout=120)
    with_env, bare = BubblewrapSandbox(env=env), BubblewrapSandbox(env=None)

    async def in_sandbox(sandbox: BubblewrapSandbox, code: str) -> None:
        result = await sandbox.run_python(code, limits)
        assert result.ok, result.observation()

    async def outside(code: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            env.python,
            "-c",
            code,
            env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"},
        )
        assert await proc.wait() == 0

    cases = {
        "empty, bare": lambda: in_sandbox(bare, "pass"),
        "empty, env": lambda: in_sandbox(with_env, "pass"),
        "pandas, inside": lambda: in_sandbox(with_env, "import pandas"),
        "pandas, outside": lambda: outside("import pandas"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(n + 1):
        for name, case in cases.items():
            took = await _timed(case())
            if i:  # the first round warms the page cache
                times[name].append(took)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    bench.figure(
        KEY,
        "empty program in the sandbox environment, p50",
        p50["empty, env"] * 1000,
        "ms",
        "same with the bare python3",
        p50["empty, bare"] * 1000,
        target="<= 1.15",
    )
    bench.figure(
        KEY,
        "import pandas inside the sandbox, p50",
        p50["pandas, inside"] * 1000,
        "ms",
        "import pandas outside the sandbox",
        p50["pandas, outside"] * 1000,
    )
    bench.figure(
        KEY,
        "import pandas in the sandbox, p50",
        p50["pandas, inside"] * 1000,
        "ms",
        "empty program in the sandbox",
        p50["empty, env"] * 1000,
    )
    for name, t in times.items():
        bench.series(KEY, name, "cdf", t)
    bench.note(KEY, f"{n} runs per case, interleaved; environment {env.root.name}")
