"""Latency in the end-to-end run of part e: a step event made by a runtime -> printed by
`adp tail --json`, and a finished event -> its trajectory file on disk (file time minus the
finished event's timestamp): p50 and p99. The tail figure's baseline is the file figure of the
same run; the file p99 is held to 1 s."""

from __future__ import annotations

import statistics

from bench.core import Bench
from bench.parts.e_end_to_end import end_to_end

KEY = "f"
NAME = "latency"
TITLE = "Latency: step -> adp tail, finished -> file (p50, p99)"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run(bench: Bench) -> None:
    info = await end_to_end(bench)
    tail, files = info["tail_lag"], info["file_lag"]
    if not tail or not files:
        bench.note(KEY, f"no samples (tail {len(tail)}, files {len(files)})")
        return
    bench.figure(KEY, "finished -> file, p50", statistics.median(files), "s")
    bench.figure(KEY, "finished -> file, p99", pct(files, 0.99), "s", target="< 1", on="value")
    bench.figure(
        KEY,
        "step -> adp tail, p50",
        statistics.median(tail),
        "s",
        "finished -> file p50",
        statistics.median(files),
    )
    bench.figure(
        KEY, "step -> adp tail, p99", pct(tail, 0.99), "s", "finished -> file p99", pct(files, 0.99)
    )
    bench.series(KEY, "finished -> file", "cdf", files)
    bench.series(KEY, "step -> adp tail", "cdf", tail)
    bench.note(KEY, f"{len(files)} files, {len(tail)} step events seen by adp tail")
