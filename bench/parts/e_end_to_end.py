"""End to end with a zero-latency stub: `adp produce` of code tasks (each runs one python tool
call in the sandbox, then answers) -> 2 code runtimes -> the aggregator -> files; step events
per second from the first produce to the last file, against the same python runs straight
through the sandbox at the same total concurrency (the work the tasks really do)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import Any

from bench.core import ADP, Bench
from bench.load_test import sandbox_baseline
from bench.tasks import count_files, produce_tasks

KEY = "e"
NAME = "end-to-end"
TITLE = "End to end (zero-latency stub): step events/s from produce to files"
RUNTIMES, CONCURRENCY = 2, 16


def _tail(bench: Bench, seen: list[tuple[float, float]], stop: threading.Event) -> Any:
    proc = subprocess.Popen(
        [*ADP, "tail", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=bench.children.env,
        text=True,
    )

    def read() -> None:
        for line in proc.stdout:
            arrived = time.time()
            try:
                seen.append((arrived, json.loads(line)["timestamp"]))
            except (ValueError, KeyError):
                continue
            if stop.is_set():
                break

    threading.Thread(target=read, daemon=True).start()
    return proc


async def start_at_end(bootstrap: str, group: str) -> None:
    """Commit the ends of adp.steps and adp.trajectories for the aggregator group `group`, so
    it skips what earlier parts left there (its sink agent would re-write every trajectory on
    the topic first) and the figures are this part's own."""
    from aiokafka import TopicPartition

    from adp.streams.kafka import clients
    from adp.streams.kafka.admin import partition_counts
    from adp.streams.kafka.topics import STEPS, TRAJECTORIES

    counts = await partition_counts(bootstrap, [STEPS, TRAJECTORIES])
    consumer = await clients.start(
        clients.consumer(conf=bootstrap, client_id="adp-bench", group_id=group)
    )
    try:
        parts = [TopicPartition(t, p) for t in (STEPS, TRAJECTORIES) for p in range(counts[t])]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.commit({tp: ends[tp] for tp in parts})
    finally:
        await consumer.stop()


async def end_to_end(bench: Bench) -> dict[str, Any]:
    if "e2e" in bench.shared:
        return bench.shared["e2e"]
    n = bench.size(600, 120)
    url = bench.stub(0.0)
    out = bench.work / "e2e-out"
    await start_at_end(bench.bootstrap, "bench-e2e")
    bench.start("e2e-aggregator", ["aggregate", "--out", str(out), "--app-id", "bench-e2e"])
    for i in range(RUNTIMES):
        bench.start(
            f"e2e-runtime-{i}",
            ["runtime", "code", "--concurrency", str(CONCURRENCY)],
            env={"ADP_LLM_BASE_URL": url},
        )
    tail_seen: list[tuple[float, float]] = []
    stop = threading.Event()
    tail = _tail(bench, tail_seen, stop)
    await asyncio.sleep(8)  # members joined their groups; the first tasks would wait otherwise
    began = time.monotonic()
    produce_tasks(bench, "e2e", n)
    xs, ys = [], []
    while True:
        bench.children.check()
        done = count_files(out, "e2e")
        xs.append(time.monotonic() - began)
        ys.append(done)
        if done >= n or xs[-1] > 600:
            break
        await asyncio.sleep(0.25)
    seconds = xs[-1]
    stop.set()
    tail.terminate()
    tail.wait(10)
    file_lag = []
    for path in out.glob("e2e-*.json"):
        doc = json.loads(path.read_text())
        file_lag.append(max(0.0, path.stat().st_mtime - doc["metadata"]["finished_at"]))
    events = sum(len(json.loads(p.read_text())["steps"]) + 2 for p in out.glob("e2e-*.json"))
    for name in ["e2e-aggregator"] + [f"e2e-runtime-{i}" for i in range(RUNTIMES)]:
        bench.stop(name)
    info = {
        "tasks": n,
        "events": events,
        "seconds": seconds,
        "x": xs,
        "y": ys,
        "tail_lag": [max(0.0, a - t) for a, t in tail_seen],
        "file_lag": file_lag,
    }
    bench.shared["e2e"] = info
    return info


async def run(bench: Bench) -> None:
    info = await end_to_end(bench)
    base = await sandbox_baseline(info["tasks"], RUNTIMES * CONCURRENCY)
    events_per_task = info["events"] / info["tasks"]
    bench.figure(
        KEY,
        "pipeline, step events/s",
        info["events"] / info["seconds"],
        "events/s",
        f"sandbox alone x {events_per_task:.0f} events/task",
        base * events_per_task,
    )
    bench.series(KEY, "trajectory files", "throughput", info["x"], info["y"])
    bench.note(
        KEY,
        f"{info['tasks']} tasks, {info['events']} step events, {RUNTIMES} runtimes "
        f"x {CONCURRENCY}, {info['seconds']:.1f}s from produce to the last file",
    )
