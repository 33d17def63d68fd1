"""`adp replay` (no consumer group, the same assembler, the file sink) over the same adp.steps
workload as part b, against the same raw consume + decode + assemble loop (one process): as
users run it (its default --workers: one process per CPU, at most one per partition), and in
one process (--workers 1), the like-for-like figure."""

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
    for label, extra in (("adp replay", []), ("adp replay --workers 1", ["--workers", "1"])):
        name = "replay" if not extra else "replay-1"
        out = bench.work / f"{name}-out"
        proc = bench.start(name, ["replay", "--out", str(out), "--json", *extra])
        spy = bench.profile(f"{KEY}-{name}", proc.pid, 15 if bench.quick else 30) if extra else None
        while proc.poll() is None:
            await asyncio.sleep(0.5)
        if spy is not None:
            bench.profile_done(f"{KEY}-{name}", spy)
        log = bench.log_of(name).read_text()
        bench.stop(name)
        summary = json.loads(next(line for line in log.splitlines() if line.startswith("{")))
        workers = summary.get("workers", 1)
        bench.figure(
            KEY,
            f"{label} ({workers} process{'es' if workers > 1 else ''})",
            summary["records_per_second"],
            "events/s",
            "raw loop (1 process)",
            raw["rate"],
            target=">= 0.8" if not extra else "",
        )
        bench.note(
            KEY,
            f"{label}: {summary['records_read']:,} records, "
            f"{summary['trajectories_written']:,} trajectories written in "
            f"{summary['seconds']:.1f}s by {workers} process(es) "
            f"(workload: {steps['tasks']:,} tasks)",
        )
