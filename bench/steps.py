"""The step-event workload on the bench broker and the baseline the aggregator and replay are
held to: a plain aiokafka consume + decode + assemble loop over the same topic."""

from __future__ import annotations

import time
from typing import Any

from bench.core import Bench, console
from bench.workload import Workload, cached_events, produce


def workload(bench: Bench) -> Workload:
    return Workload(tasks=bench.size(8500, 1000))


async def ensure_steps(bench: Bench) -> dict[str, Any]:
    """Put the workload on adp.steps once per run; what it put there."""
    if "steps" in bench.shared:
        return bench.shared["steps"]
    from adp.streams.kafka.topics import STEPS

    w = workload(bench)
    t0 = time.perf_counter()
    events = cached_events(w)
    made = time.perf_counter() - t0
    seconds = await produce(bench.bootstrap, STEPS, events)
    info = {
        "tasks": w.tasks,
        "events": len(events),
        "bytes": sum(len(v) for _, v in events),
        "produce_seconds": seconds,
    }
    console.print(
        f"  adp.steps: {len(events):,} events of {w.tasks:,} tasks "
        f"({info['bytes'] / len(events):,.0f} B each) produced in {seconds:.1f}s "
        f"(workload ready in {made:.1f}s)"
    )
    bench.shared["steps"] = info
    return info


async def raw_loop(bench: Bench) -> dict[str, Any]:
    """consume + decode + assemble over adp.steps with a plain aiokafka consumer (no group,
    nothing written): events/s, and the count over time for the plot."""
    if "raw" in bench.shared:
        return bench.shared["raw"]
    from adp.schemas import codec
    from adp.schemas.contracts import StepEvent
    from adp.streams.aggregator.assembly import TrajectoryAssembler
    from adp.streams.kafka.reader import capture_range, open_consumer, read_range, topic_partitions
    from adp.streams.kafka.topics import STEPS

    await ensure_steps(bench)
    assemblers: dict[int, TrajectoryAssembler] = {}
    done = [0, 0]
    xs: list[float] = []
    ys: list[float] = []

    def on_records(tp: Any, records: list) -> None:
        a = assemblers.setdefault(tp.partition, TrajectoryAssembler())
        for r in records:
            event, raw = codec.decode_record(r.value, expect=StepEvent)
            done[1] += len(a.feed(event, scope=tp.partition, raw=raw))
        done[0] += len(records)
        xs.append(time.perf_counter() - began)
        ys.append(done[0])

    parts = await topic_partitions(bench.bootstrap, STEPS)
    consumer = await open_consumer(bench.bootstrap)
    try:
        rng = await capture_range(consumer, parts, None)
        began = time.perf_counter()
        await read_range(consumer, rng, on_records)
        seconds = time.perf_counter() - began
    finally:
        await consumer.stop()
    info = {
        "events": done[0],
        "trajectories": done[1],
        "seconds": seconds,
        "rate": done[0] / seconds,
        "x": xs,
        "y": ys,
    }
    bench.shared["raw"] = info
    return info


def rates(xs: list[float], ys: list[float], window: float = 1.0) -> tuple[list, list]:
    """Cumulative counts over time -> per-second rates over `window` seconds."""
    out_x, out_y = [], []
    j = 0
    for i in range(len(xs)):
        while xs[i] - xs[j] > window and j < i:
            j += 1
        if i > j and xs[i] > xs[j]:
            out_x.append(xs[i])
            out_y.append((ys[i] - ys[j]) / (xs[i] - xs[j]))
    return out_x, out_y
