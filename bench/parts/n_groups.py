"""Groups for a trainer (adp.client's GroupStream) against the aggregator that makes them.

Step events of tasks with 4 samples each (bench/workload.py, samples=4) go onto adp.steps
while the live aggregator (`adp aggregate`) turns them into trajectories and a trainer process
(bench/group_trainer.py) consumes adp.trajectories as groups, acknowledging each (every
acknowledgement is a commit before the next group). Figures, all from this run:

- live: samples/s the trainer received in groups, against the trajectories/s the aggregator
  published over the same stretch, and how long after the aggregator's last trajectory the
  trainer had its last group;
- catch-up: a second trainer (a new consumer group) reading the whole topic from the start,
  in samples/s, against the aggregator's trajectories/s: the group stream must not be the
  slower one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bench.core import Bench, console
from bench.parts.e_end_to_end import start_at_end
from bench.workload import Workload, cached_events, produce

KEY = "n"
NAME = "groups"
TITLE = "Groups to a trainer: samples/s in complete groups vs the aggregator's trajectories/s"
K = 4


def _lines(path: Path) -> list[tuple[float, int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        t, n, name = line.split(" ", 2)
        out.append((float(t), int(n), name))
    return out


async def _published(bench: Bench) -> int:
    from adp.streams.kafka.reader import open_consumer, topic_partitions
    from adp.streams.kafka.topics import TRAJECTORIES

    consumer = await open_consumer(bench.bootstrap)
    try:
        parts = await topic_partitions(bench.bootstrap, TRAJECTORIES)
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


def _trainer(bench: Bench, name: str, start: str, mode: str, log: Path) -> None:
    bench.start(
        name,
        [bench.bootstrap, name, start, mode, str(log)],
        command=["-m", "bench.group_trainer"],
    )


async def _wait(bench: Bench, what, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        bench.children.check()
        if time.monotonic() > deadline:
            raise TimeoutError(why)
        await asyncio.sleep(0.25)


async def run(bench: Bench) -> None:
    w = Workload(tasks=bench.size(4000, 400), samples=K, prefix="grp", seed=25)
    groups = w.tasks // K
    events = cached_events(w)
    await start_at_end(bench.bootstrap, "bench-groups")
    before = await _published(bench)
    live_log = bench.work / "groups-live.log"
    _trainer(bench, "groups-live", "latest", "follow", live_log)
    await _wait(bench, lambda: _lines(live_log), 240, "the live trainer to join its group")
    out = bench.work / "groups-out"
    bench.start("groups-aggregator", ["aggregate", "--out", str(out), "--app-id", "bench-groups"])
    await produce(bench.bootstrap, "adp.steps", events)
    xs, published = [], []
    began = time.monotonic()
    while True:
        bench.children.check()
        xs.append(time.time())
        published.append(await _published(bench) - before)
        mine = [g for g in _lines(live_log) if g[2].startswith("grp-")]
        if len(mine) >= groups and published[-1] >= w.tasks:
            break
        if time.monotonic() - began > 900:
            raise TimeoutError(f"groups: {len(mine)}/{groups} groups after 900s")
        await asyncio.sleep(0.5)
    first = next(x for x, p in zip(xs, published) if p > 0)
    last = next(x for x, p in zip(xs, published) if p >= w.tasks)
    aggregator_rate = w.tasks / max(last - first, 1e-6)
    got = [g for g in _lines(live_log) if g[2].startswith("grp-")]
    live_rate = sum(n for _, n, _ in got) / max(got[-1][0] - first, 1e-6)
    bench.stop("groups-live")
    bench.stop("groups-aggregator")
    bench.figure(
        KEY,
        "live trainer, samples/s in complete groups",
        live_rate,
        "samples/s",
        "aggregator trajectories/s",
        aggregator_rate,
        target=">= 0.9",
    )
    bench.figure(KEY, "live trainer's last group after the last trajectory", got[-1][0] - last, "s")
    assert all(n == K for _, n, _ in got), "a group came incomplete"

    catchup_log = bench.work / "groups-catchup.log"
    t0 = time.monotonic()
    _trainer(bench, "groups-catchup", "earliest", "once", catchup_log)
    while _alive(bench, "groups-catchup"):  # it stops at the topic's end
        if time.monotonic() - t0 > 900:
            raise TimeoutError("the catch-up trainer did not read the topic in 900s")
        await asyncio.sleep(0.5)
    code = bench.stop("groups-catchup")
    if code != 0:
        raise RuntimeError(f"the catch-up trainer exited {code}: {bench.log_of('groups-catchup')}")
    seen = _lines(catchup_log)
    samples = sum(n for _, n, name in seen if name != "ready")
    ready = seen[0][0]
    span = max(seen[-1][0] - ready, 1e-6)
    bench.figure(
        KEY,
        "catch-up trainer, samples/s in groups (whole topic)",
        samples / span,
        "samples/s",
        "aggregator trajectories/s",
        aggregator_rate,
        target=">= 1",
    )
    bench.note(
        KEY,
        f"{groups} groups of {K} samples ({w.tasks} trajectories, {len(events)} step events); "
        f"catch-up read {samples} samples in {len(seen) - 1} groups in {span:.1f}s "
        f"({time.monotonic() - t0:.0f}s with joining the group); python {sys.version.split()[0]}",
    )
    console.print(f"  groups: aggregator {aggregator_rate:.0f} trajectories/s")


def _alive(bench: Bench, name: str) -> bool:
    return any(child == name and proc.poll() is None for child, proc, _ in bench.children.procs)
