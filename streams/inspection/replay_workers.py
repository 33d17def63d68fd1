"""`adp replay --workers N`: one replay spread over N processes, by partition.

Replay is bound by one interpreter (decode, assemble, render: the GIL), and its work divides
cleanly by partition: each partition is assembled on its own (scope = partition) exactly as in
one process, so N processes that each read a share of the partitions write the same files.

The parent captures the range once (start offsets, end offsets now), hands each worker a share
of the partitions with their offsets, balanced by record count, and follows their progress
through shared counters. Each worker is a fresh interpreter (multiprocessing's "spawn": the
parent runs an event loop and Kafka clients, which a fork would copy half-alive) that opens
its own sink on the same destination and runs streams.replay.replay over its share. Their
summaries are merged into one; a worker that fails ends the replay with its error, and the
others are stopped.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

from adp.connectors.sinks.base import BaseSink
from adp.connectors.sinks.destinations import open_sink
from adp.core.errors import AdpError, ComponentCrashed
from adp.core.settings import Settings
from adp.streams.inspection.replay import SOURCES, ReplayError, ReplaySummary, capture, replay
from adp.streams.kafka.reader import Range, open_consumer

log = logging.getLogger(__name__)

# Below this many records a second process costs more (its start: ~1-2 s of imports) than it
# saves.
MIN_RECORDS_PER_WORKER = 20_000
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def auto_workers(rng: Range, cpus: int | None = None) -> int:
    """Processes worth starting for `rng`: one per CPU, at most one per partition with records,
    and one per MIN_RECORDS_PER_WORKER records."""
    busy = sum(1 for tp in rng.start if rng.end[tp] > rng.start[tp])
    return max(1, min(cpus or os.cpu_count() or 1, busy, rng.total // MIN_RECORDS_PER_WORKER))


def split(rng: Range, workers: int) -> list[Range]:
    """The partitions of `rng` in `workers` shares of about equal record counts (largest
    partition first into the lightest share); empty shares are left out."""
    shares: list[tuple[int, Range]] = [(0, Range(start={}, end={})) for _ in range(workers)]
    for tp in sorted(rng.start, key=lambda tp: rng.start[tp] - rng.end[tp]):
        i = min(range(workers), key=lambda j: shares[j][0])
        load, share = shares[i]
        share.start[tp], share.end[tp] = rng.start[tp], rng.end[tp]
        shares[i] = (load + max(0, rng.end[tp] - rng.start[tp]), share)
    return [share for load, share in shares if share.start and load > 0] or [rng]


def merge(parts: list[ReplaySummary], total: int, seconds: float) -> ReplaySummary:
    first = parts[0]
    out = ReplaySummary(
        source=first.source,
        destination=first.destination,
        since=first.since,
        until=first.until,
        total_in_range=total,
        seconds=seconds,
        workers=len(parts),
    )
    for name in (
        "records_read",
        "outside_window",
        "undecodable",
        "invalid",
        "tombstones",
        "trajectories_written",
        "incomplete_attempts",
    ):
        setattr(out, name, sum(getattr(p, name) for p in parts))
    for p in parts:
        for name, value in p.assembler.items():
            out.assembler[name] = out.assembler.get(name, 0) + value
        out.written_task_ids |= p.written_task_ids
    out.task_ids = len(out.written_task_ids)
    return out


def _stop_with_parent(parent: int) -> None:
    """Ctrl-C reaches the whole process group: the parent alone acts on it (and stops the
    workers). A parent killed outright takes its workers along (Linux: PR_SET_PDEATHSIG)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's finally stops them
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _worker(
    conf: Settings,
    out: str,
    share: Range,
    options: dict[str, Any],
    verbose: int,
    done: Any,
    results: Any,
    index: int,
    parent: int,
) -> None:
    """One worker process: replay `share` into `out`; puts (index, summary | error) on
    `results` and keeps `done.value` at the records it has read."""
    from adp.core import logs
    from adp.core.process import relax_gc

    _stop_with_parent(parent)
    logs.setup(verbose)
    relax_gc()
    if not verbose:
        logging.getLogger("adp.streams.aggregator.assembly").setLevel(logging.WARNING)
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def progress(read: int, _total: int) -> None:
        done.value = read

    async def main() -> ReplaySummary:
        sink = await open_sink(out)
        try:
            return await replay(
                conf, sink, destination=out, progress=progress, rng=share, **options
            )
        finally:
            await sink.close()

    try:
        results.put((index, asyncio.run(main())))
    except AdpError as exc:
        results.put((index, f"{exc}"))
    except Exception as exc:
        results.put((index, f"writing to {out} failed: {type(exc).__name__}: {exc}"))


async def replay_spread(
    conf: Settings,
    sink: BaseSink,
    out: str,
    workers: int | None,
    source: str,
    since: float | None,
    options: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Capture the range once and replay it into `out` in `workers` processes (None:
    auto_workers); with one, in this process with `sink`."""
    consumer = await open_consumer(conf)
    try:
        rng = await capture(conf, consumer, SOURCES[source], since)
    finally:
        await consumer.stop()
    shares = split(rng, workers or auto_workers(rng))
    if len(shares) == 1:
        return await replay(
            conf,
            sink,
            source=source,
            since=since,
            destination=out,
            progress=progress,
            rng=rng,
            **options,
        )
    options = {**options, "source": source, "since": since}
    log.info("replaying %d records of %s in %d processes", rng.total, SOURCES[source], len(shares))
    return await _Spread(conf, out, rng, shares, options, progress).run()


class _Spread:
    """The worker processes of one spread replay, their progress counters and the summaries
    they have reported so far."""

    def __init__(
        self,
        conf: Settings,
        out: str,
        rng: Range,
        shares: list[Range],
        options: dict[str, Any],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.rng = rng
        self.progress = progress
        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        self.counters = [ctx.Value("q", 0, lock=False) for _ in shares]
        verbose = 1 if logging.getLogger("adp").isEnabledFor(logging.DEBUG) else 0
        parent = os.getpid()
        self.procs = [
            ctx.Process(
                target=_worker,
                name=f"adp-replay-{i}",
                daemon=True,
                args=(
                    conf,
                    out,
                    share,
                    options,
                    verbose,
                    self.counters[i],
                    self.results,
                    i,
                    parent,
                ),
            )
            for i, share in enumerate(shares)
        ]
        self.summaries: dict[int, ReplaySummary] = {}

    async def run(self) -> ReplaySummary:
        began = time.monotonic()
        try:
            for proc in self.procs:
                proc.start()
            while len(self.summaries) < len(self.procs):
                if self.progress is not None:
                    self.progress(sum(c.value for c in self.counters), self.rng.total)
                await self._collect_one()
        finally:
            self._stop()
        if self.progress is not None:
            self.progress(sum(s.records_read for s in self.summaries.values()), self.rng.total)
        parts = [self.summaries[i] for i in sorted(self.summaries)]
        return merge(parts, self.rng.total, time.monotonic() - began)

    async def _collect_one(self) -> None:
        """Wait briefly for one worker's result; a worker that failed ends the replay with its
        error, one that died without reporting ends it as a crash."""
        try:
            index, result = await asyncio.to_thread(self.results.get, True, 0.2)
        except queue.Empty:
            self._check_alive()
            return
        if isinstance(result, str):
            raise ReplayError(f"worker {index}: {result}")
        self.summaries[index] = result

    def _check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if i not in self.summaries and not proc.is_alive() and self.results.empty():
                raise ComponentCrashed(
                    f"replay worker {i} exited with code {proc.exitcode} "
                    f"before it reported (killed?)"
                ) from None

    def _stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(10)
