"""`adp replay` (no consumer group, the same assembler, the file sink) over the same adp.steps
workload as part b, against the same raw consume + decode + assemble loop."""

from __future__ import annotations

import asyncio
import json

from bench.core import Bench
from bench.steps import ensure_steps, raw_loop

KEY = "c"
NAME = "replay"
TITLE = "Replay: events/s vs the raw loop"


async def run(bench: Bench) -> None:
    steps = await ensure_steps(bench)
    raw = await raw_loop(bench)
    proc = bench.start("replay", ["replay", "--out", str(bench.work / "replay-out"), "--json"])
    spy = bench.profile(f"{KEY}-replay", proc.pid, 15 if bench.quick else 30)
    while proc.poll() is None:
        await asyncio.sleep(0.5)
    bench.profile_done(f"{KEY}-replay", spy)
    log = bench.log_of("replay").read_text()
    bench.stop("replay")
    summary = json.loads(next(line for line in log.splitlines() if line.startswith("{")))
    bench.figure(KEY, "adp replay", summary["records_per_second"], "events/s", "raw loop",
                 raw["rate"], target=">= 0.8")
    bench.note(KEY, f"{summary['records_read']:,} records, {summary['trajectories_written']:,} "
                    f"trajectories written in {summary['seconds']:.1f}s "
                    f"(workload: {steps['tasks']:,} tasks)")
