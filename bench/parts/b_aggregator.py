"""The live Faust aggregator (`adp aggregate`, file sink) over the step workload preloaded on
adp.steps (about 2 KB per event, raw LLM exchange included, 10 steps per task, interleaved
tasks, some redelivered stretches and abandoned attempts): step events per second from its
first event to its last file, against a plain aiokafka consume + decode + assemble loop over
the same topic. A bare Faust agent that only counts the events shows what Faust's own
per-message path allows on this machine."""

from __future__ import annotations

import asyncio
import time

from bench.core import Bench, metric, rss_mib
from bench.steps import ensure_steps, rates, raw_loop

KEY = "b"
NAME = "aggregator"
TITLE = "Aggregator, live: step events/s to files vs a raw consume + decode + assemble loop"
METRICS_PORT_OFFSET = 40


async def run(bench: Bench) -> None:
    steps = await ensure_steps(bench)
    raw = await raw_loop(bench)
    bench.figure(KEY, "raw loop (aiokafka consume + decode + assemble)", raw["rate"], "events/s")
    bench.series(KEY, "raw loop", "throughput", *rates(raw["x"], raw["y"]))

    port = bench.cluster_port + METRICS_PORT_OFFSET
    out = bench.work / "aggregator-out"
    proc = bench.start(
        "aggregator",
        ["aggregate", "--out", str(out), "--app-id", "bench-agg", "--metrics-port", str(port)],
    )
    url = f"http://127.0.0.1:{port}/metrics"
    tasks, events = steps["tasks"], steps["events"]
    xs, ys, written, rss = [], [], [], []
    began = time.monotonic()
    first: float | None = None
    spy = None
    while True:
        bench.children.check()
        now = time.monotonic() - began
        seen = metric(url, "adp_aggregator_events_total")
        files = metric(url, "adp_sink_writes_total")
        if seen and first is None:
            first = now
            spy = bench.profile(f"{KEY}-aggregator", proc.pid, 20 if bench.quick else 40)
        xs.append(now)
        ys.append(seen)
        written.append(files)
        rss.append(rss_mib(proc.pid))
        if files >= tasks:
            break
        if now > 900:
            raise TimeoutError(f"aggregator: {files:.0f}/{tasks} files after {now:.0f}s")
        await asyncio.sleep(0.5)
    bench.profile_done(f"{KEY}-aggregator", spy)
    bench.stop("aggregator")
    seconds = xs[-1] - (first or 0)
    live = events / seconds
    bench.figure(
        KEY, "live aggregator, events/s per worker", live, "events/s", target=">= 10000", on="value"
    )
    bench.figure(
        KEY,
        "live aggregator vs raw loop",
        live,
        "events/s",
        "raw loop",
        raw["rate"],
        target=">= 0.5",
    )
    t0 = first or 0
    bench.series(
        KEY, "live aggregator (events in)", "throughput", *rates([x - t0 for x in xs], ys, 2.0)
    )
    bench.series(
        KEY,
        "live aggregator (trajectories out x10)",
        "throughput",
        *rates([x - t0 for x in xs], [w * 10 for w in written], 2.0),
    )
    bench.series(KEY, "live aggregator RSS", "rss", [x - t0 for x in xs], rss)
    bench.note(
        KEY,
        f"{events:,} events, {tasks:,} tasks; live: first event {t0:.1f}s after "
        f"start, last file {seconds:.1f}s later; raw loop {raw['seconds']:.1f}s",
    )
    if not bench.quick:
        await faust_ceiling(bench, raw["rate"], min(events, 40_000))


async def faust_ceiling(bench: Bench, raw_rate: float, count: int) -> None:
    """A Faust agent doing nothing but count `count` events of adp.steps (its own group)."""
    proc = bench.start(
        "faust-bare", [], command=["-m", "bench.faust_bare", bench.bootstrap, str(count)]
    )
    deadline = time.monotonic() + 600
    while proc.poll() is None:
        if time.monotonic() > deadline:
            bench.stop("faust-bare")
            bench.note(KEY, "bare Faust agent: gave up after 600s")
            return
        await asyncio.sleep(0.5)
    text = bench.log_of("faust-bare").read_text()
    rate = float(text.split("rate=")[1].split()[0]) if "rate=" in text else 0.0
    bench.stop("faust-bare")
    if rate:
        bench.figure(
            KEY, "bare Faust agent (counts events, no work)", rate, "events/s", "raw loop", raw_rate
        )
