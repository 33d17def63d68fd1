"""Groups for a trainer (adp.client's GroupStream) against the aggregator that makes them.

Step events of tasks with 4 samples each (bench/workload.py, samples=4) go onto adp.steps
while the live aggregator (`adp aggregate`) turns them into trajectories and a trainer process
(bench/group_trainer.py) consumes adp.trajectories as groups, acknowledging each and
committing every STEP groups, as a GRPO trainer taking STEP groups per step does. Figures,
all from this run:

- live: samples/s the trainer received in groups, against the trajectories/s the aggregator
  published over the same stretch, and how long after the aggregator's last trajectory the
  trainer had its last group;
- catch-up: a second trainer (a new consumer group) reading the whole topic from the start,
  in samples/s, against the aggregator's trajectories/s: the group stream must not be the
  slower one; and the same with a commit after every group (the default: a trainer killed
  gets at most the group it held again), which costs a broker round trip per group.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.core import Bench, console
from bench.parts.e_end_to_end import start_at_end
from bench.workload import Workload, cached_events, produce

KEY = "p"
NAME = "groups"
TITLE = "Groups to a trainer: samples/s in complete groups vs the aggregator's trajectories/s"
K = 4
STEP = 8  # groups per commit: a GRPO step of 8 groups


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


def _trainer(bench: Bench, name: str, start: str, mode: str, log: Path, every: int) -> None:
    bench.start(
        name,
        [bench.bootstrap, name, start, mode, str(log), str(every)],
        command=["-m", "bench.group_trainer"],
    )


async def _wait(bench: Bench, what, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        bench.children.check()
        if time.monotonic() > deadline:
            raise TimeoutError(why)
        await asyncio.sleep(0.25)


async def _live(bench: Bench, w: Workload, events: list) -> float:
    """The aggregator making groups while a trainer consumes them: the figures of the live
    stretch; returns the aggregator's trajectories/s."""
    groups = w.tasks // K
    await start_at_end(bench.bootstrap, "bench-groups")
    before = await _published(bench)
    live_log = bench.work / "groups-live.log"
    _trainer(bench, "groups-live", "latest", "follow", live_log, STEP)
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
        f"live trainer (a commit per {STEP} groups), samples/s in complete groups",
        live_rate,
        "samples/s",
        "aggregator trajectories/s",
        aggregator_rate,
        target=">= 0.9",
    )
    bench.figure(KEY, "live trainer's last group after the last trajectory", got[-1][0] - last, "s")
    assert all(n == K for _, n, _ in got), "a group came incomplete"
    return aggregator_rate


async def run(bench: Bench) -> None:
    w = Workload(tasks=bench.size(4000, 400), samples=K, prefix="grp", seed=25)
    events = cached_events(w)
    aggregator_rate = await _live(bench, w, events)
    for every in (STEP, 1):
        rate, note = await _catch_up(bench, every)
        bench.figure(
            KEY,
            f"catch-up trainer (a commit per {every} group{'s' if every > 1 else ''}), "
            "samples/s in groups over the whole topic",
            rate,
            "samples/s",
            "aggregator trajectories/s",
            aggregator_rate,
            target=">= 1" if every == STEP else "",
        )
        bench.note(KEY, note)
    bench.note(
        KEY, f"{w.tasks // K} groups of {K} samples ({w.tasks} trajectories, {len(events)} events)"
    )
    console.print(f"  groups: aggregator {aggregator_rate:.0f} trajectories/s")


async def _catch_up(bench: Bench, every: int) -> tuple[float, str]:
    """A new trainer reading the whole topic once: samples/s from the moment it owns the
    partitions to its last group (reading, decoding, grouping, committing)."""
    name = f"groups-catchup-{every}"
    log = bench.work / f"{name}.log"
    t0 = time.monotonic()
    _trainer(bench, name, "earliest", "once", log, every)
    while _alive(bench, name):  # it stops at the topic's end
        if time.monotonic() - t0 > 900:
            raise TimeoutError(f"{name} did not read the topic in 900s")
        await asyncio.sleep(0.5)
    code = bench.stop(name)
    if code != 0:
        raise RuntimeError(f"{name} exited {code}: {bench.log_of(name)}")
    lines = _lines(log)
    seen = [g for g in lines if g[2] != "ready"]
    samples = sum(n for _, n, _ in seen)
    span = max(seen[-1][0] - lines[0][0], 1e-6)  # from joining the group to the last group
    return samples / span, (
        f"catch-up, a commit per {every}: {samples} samples in {len(seen)} groups in "
        f"{span:.1f}s ({time.monotonic() - t0:.0f}s with starting and joining the group)"
    )


def _alive(bench: Bench, name: str) -> bool:
    return any(child == name and proc.poll() is None for child, proc, _ in bench.children.procs)
