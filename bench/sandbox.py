"""Sandbox start-up cost, as ratios measured in the same run on the same machine.

    .venv/bin/python -m bench.sandbox [--runs 15]

- empty program: `pass` in the sandbox with its scientific environment against the same run
  with Debian's bare python3 (the sandbox before it had one): the environment must not make a
  program that imports nothing slower (ratio about 1.0);
- import pandas: `import pandas` in the sandbox against the environment's interpreter run
  directly on the host, outside any sandbox: what bubblewrap and the limits add to a real import;
- import pandas against the empty program, both in the sandbox: what importing the stack costs.

Medians of --runs sequential runs each (one warm-up run first). Prints a table, or --json.
`run(runs)` returns the numbers for a caller such as bench/__main__.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time

from adp.runtimes.tools.sandbox import SandboxLimits
from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox, sandbox_available
from adp.runtimes.tools.sandbox.env import ensure_env

LIMITS = SandboxLimits(memory_mb=1024, wall_timeout=120)


async def _median_in_sandbox(sandbox: BubblewrapSandbox, code: str, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        result = await sandbox.run_python(code, LIMITS)
        if not result.ok:
            raise RuntimeError(f"{code!r} failed in the sandbox: {result.observation()}")
        if i:  # the first run warms the page cache
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _median_outside(python: str, code: str, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", code], check=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"})
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(runs: int = 15) -> dict[str, float]:
    why = sandbox_available()
    if why is not None:
        raise RuntimeError(f"bubblewrap sandbox unusable: {why}")
    env = ensure_env()
    if env is None:
        raise RuntimeError("ADP_SANDBOX_ENV=none: there is no sandbox environment to measure")
    with_env, bare = BubblewrapSandbox(env=env), BubblewrapSandbox(env=None)

    async def measure() -> dict[str, float]:
        return {
            "empty_bare_s": await _median_in_sandbox(bare, "pass", runs),
            "empty_env_s": await _median_in_sandbox(with_env, "pass", runs),
            "pandas_in_sandbox_s": await _median_in_sandbox(with_env, "import pandas", runs),
        }

    out = asyncio.run(measure())
    out["pandas_outside_s"] = _median_outside(env.python, "import pandas", runs)
    out["empty_env_vs_bare"] = out["empty_env_s"] / out["empty_bare_s"]
    out["pandas_inside_vs_outside"] = out["pandas_in_sandbox_s"] / out["pandas_outside_s"]
    out["pandas_vs_empty_in_sandbox"] = out["pandas_in_sandbox_s"] / out["empty_env_s"]
    out["runs"] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per case (default 15)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    numbers = run(args.runs)
    if args.json:
        print(json.dumps(numbers, indent=2))
        return
    print(f"sandbox start-up, median of {args.runs} runs")
    print(f"  empty program, bare python3        {numbers['empty_bare_s'] * 1000:8.1f} ms")
    print(f"  empty program, sandbox environment {numbers['empty_env_s'] * 1000:8.1f} ms"
          f"   ratio {numbers['empty_env_vs_bare']:.2f}")
    print(f"  import pandas, outside the sandbox {numbers['pandas_outside_s'] * 1000:8.1f} ms")
    print(f"  import pandas, inside the sandbox  {numbers['pandas_in_sandbox_s'] * 1000:8.1f} ms"
          f"   ratio {numbers['pandas_inside_vs_outside']:.2f} (inside / outside)")


if __name__ == "__main__":
    main()
