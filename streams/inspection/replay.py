"""`adp replay`: rebuild trajectory files from the log, to a NEW destination, without Faust.

    adp replay --out DIR | s3://bucket/prefix
               [--from-beginning | --since TIME [--until TIME]]
               [--source steps|trajectories] [--expire-after S] [--forget-done-after S]
               [-b HOSTS] [--config FILE]

--source steps (default): reads adp.steps and runs the events through the same pure
TrajectoryAssembler the Faust aggregator uses (streams/aggregator/assembly.py), one fresh assembler
per partition, fed that partition's events in offset order with scope = partition, exactly as the
aggregator's agent feeds them. Each completed trajectory is what the aggregator's sink decodes from
adp.trajectories (its values already made the Avro and JSON round trip on adp.steps, so replay does
not encode and decode it again) and is written with the same sink classes, so `render()` gives the
same bytes: a replay from the beginning with the aggregator's
--expire-after and --forget-done-after reproduces its files byte for byte. (Both are decided in
event time inside the assembler, so the outcome does not depend on how fast or in which batches
replay reads.)

--source trajectories: re-sinks the published records of adp.trajectories (compacted, key
task_id): every record is written in offset order, per task_id one after the other, so the last
one wins, as the aggregator writes them. A tombstone (null value) is not written.

What replay reads: every partition from its start offset (the beginning, or with --since the
first offset whose record timestamp is >= since, found with offsets_for_times) up to the END
OFFSETS CAPTURED WHEN IT STARTS; events produced later are not read, so replay always ends.
It uses a plain aiokafka consumer with group_id=None and assigned partitions: no consumer group,
nothing is committed, the live aggregator's group (adp-aggregator) and its offsets are untouched,
and nothing is written to any topic. It writes only to --out.

Time window (--since / --until): the window is [since, until) over the Kafka record timestamp
(the producer's create time, the one offsets_for_times indexes). Create times are not monotonic
within a partition, so the seek only bounds where reading starts and every record is checked
against the window again; records outside it are skipped and counted. A task whose events
straddle a boundary (started before --since, or finished at/after --until) is simply incomplete
in the window: the assembler never completes that attempt, so it is not written; the summary
counts such attempts as "incomplete". A window replay knows nothing of what happened before the
window: a task that had already completed before it but ran again inside it (a redelivery the
live aggregator dropped as late) gets the in-window attempt's trajectory.

Speed: records are fetched in large batches (getmany, max_records) and decoded in-process; each
fetched batch's trajectories are written with the sink's write_batch while the next batch is read
(the file sink fsyncs a batch of files together). Faust's per-event path is not involved (`python -m
bench replay` measures it against a plain aiokafka loop). One process is bound by one interpreter;
`adp replay --workers N` (default: one per CPU, streams/inspection/replay_workers.py) shares the
partitions out to N processes that each run `replay()` over their share of the same captured range.
The command itself is app/commands/replay.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from adp.connectors.sinks.base import BaseSink, SinkError
from adp.core.errors import AdpError
from adp.core.settings import Settings
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Trajectory
from adp.streams.aggregator.assembly import (
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_FORGET_DONE_AFTER,
    InvalidEvent,
    TrajectoryAssembler,
)
from adp.streams.kafka import clients, oversized
from adp.streams.kafka.artifacts import ArtifactError, ArtifactFetcher
from adp.streams.kafka.reader import (
    KafkaReadError,
    Range,
    capture_range,
    open_consumer,
    read_range,
    topic_partitions,
)
from adp.streams.kafka.topics import STEPS, TRAJECTORIES

log = logging.getLogger(__name__)

SOURCES = {"steps": STEPS, "trajectories": TRAJECTORIES}


class ReplayError(AdpError):
    """A replay that cannot go on, in one line (its parts raise their own kinds: KafkaReadError
    for the broker and topic, SinkError for the destination)."""


@dataclass
class ReplaySummary:
    source: str
    destination: str
    since: float | None = None
    until: float | None = None
    total_in_range: int = 0  # offsets between the start and the captured end offsets
    records_read: int = 0  # records fetched in that range
    outside_window: int = 0  # skipped by their record timestamp
    undecodable: int = 0  # not a record of this platform (the aggregator's DLQ ones)
    invalid: int = 0  # decodable but contract-breaking events (DLQ too)
    tombstones: int = 0  # null values on adp.trajectories
    trajectories_written: int = 0  # sink writes
    task_ids: int = 0  # distinct task_ids written
    incomplete_attempts: int = 0  # attempts still open at the end of the range / window
    assembler: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1  # processes that shared the partitions
    # the task_ids written (task_ids counts them): what summaries of several workers merge
    written_task_ids: set[str] = field(default_factory=set, repr=False)

    @property
    def rate(self) -> float:
        return self.records_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "written_task_ids"}
        return {**out, "assembler": dict(self.assembler), "records_per_second": round(self.rate, 1)}

    def lines(self) -> list[str]:
        window = ""
        if self.since is not None or self.until is not None:
            window = f" in window [{_iso(self.since)}, {_iso(self.until)})"
        workers = f", {self.workers} processes" if self.workers > 1 else ""
        out = [
            f"replayed {self.source} -> {self.destination}{window}",
            f"  records read: {self.records_read} of {self.total_in_range} in range "
            f"({self.rate:,.0f}/s, {self.seconds:.1f}s{workers})",
            f"  trajectories written: {self.trajectories_written} ({self.task_ids} task ids)",
        ]
        skipped = {
            "outside window": self.outside_window,
            "undecodable": self.undecodable,
            "invalid": self.invalid,
            "tombstones": self.tombstones,
        }
        if any(skipped.values()):
            out.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in skipped.items() if v))
        if self.assembler:
            a = self.assembler
            out.append(
                f"  assembler: events {a['events']}, completed {a['completed']}, "
                f"duplicates {a['duplicates_dropped']}, "
                f"superseded {a['attempts_superseded']}, "
                f"expired {a['attempts_expired']}, late {a['late_events_dropped']}, "
                f"incomplete {self.incomplete_attempts} (not written)"
            )
        return out


def _iso(ts: float | None) -> str:
    if ts is None:
        return "…"
    from datetime import datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


# ---- writing ------------------------------------------------------------------------------------


class Writer:
    """Sink writes in batches (`write_batch`), one batch in flight while the next is being
    read and assembled: batches land in order, so for one task_id the last one wins."""

    def __init__(self, sink: BaseSink, artifacts: ArtifactFetcher | None = None) -> None:
        self.sink = sink
        self.artifacts = artifacts  # regenerates the files steps wrote, before each trajectory
        self._pending: list[Trajectory] = []
        self._writing: asyncio.Task | None = None
        self.written = 0
        self.task_ids: set[str] = set()

    def put(self, trajectory: Trajectory) -> None:
        self._pending.append(trajectory)

    async def send(self) -> None:
        """Start writing what was put since the last call (after the previous batch landed)."""
        await self._wait()
        if self._pending:
            batch, self._pending = self._pending, []
            self._writing = asyncio.create_task(self._write(batch))

    async def _write(self, batch: list[Trajectory]) -> None:
        await self.sink.store(batch, self.artifacts.fetch if self.artifacts else None)
        self.written += len(batch)
        self.task_ids.update(t.task_id for t in batch)

    async def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing  # raises the sink's error, if any

    async def drain(self) -> None:
        await self.send()
        await self._wait()


# ---- the two sources ----------------------------------------------------------------------------


def _in_window(ts_ms: int, since: float | None, until: float | None) -> bool:
    if since is not None and ts_ms < since * 1000:
        return False
    return until is None or ts_ms < until * 1000


class _Replay:
    """One replay's state: the window, an assembler per adp.steps partition (scope), the
    writer, and the summary its record handlers count into."""

    def __init__(
        self,
        sink: BaseSink,
        fetcher: ArtifactFetcher,
        summary: ReplaySummary,
        expire_after: float,
        forget_done_after: float | None,
    ) -> None:
        self.summary, self.fetcher = summary, fetcher
        self.writer = Writer(sink, artifacts=fetcher)
        self.assemblers: dict[int, TrajectoryAssembler] = {}
        self.expire_after, self.forget_done_after = expire_after, forget_done_after

    def _outside(self, ts_ms: int) -> bool:
        if _in_window(ts_ms, self.summary.since, self.summary.until):
            return False
        self.summary.outside_window += 1
        return True

    def _assembler(self, partition: int) -> TrajectoryAssembler:
        if partition not in self.assemblers:
            self.assemblers[partition] = TrajectoryAssembler(
                expire_after=self.expire_after, forget_done_after=self.forget_done_after
            )
        return self.assemblers[partition]

    async def on_steps(self, tp: TopicPartition, records: list) -> None:
        assembler = self._assembler(tp.partition)
        for r in records:
            if self._outside(r.timestamp):
                continue
            try:
                event, raw = codec.decode_record(r.value, expect=StepEvent)
            except (codec.DecodeError, ValidationError):
                self.summary.undecodable += 1
                continue
            try:
                done = assembler.feed(event, scope=tp.partition, raw=raw)
            except InvalidEvent:
                self.summary.invalid += 1
                continue
            for trajectory in done:
                # The aggregator's sink writes decode(encode(t)); that is t itself here: every
                # value was decoded from adp.steps, so its JSON fields are already what a JSON
                # round trip gives (string keys, lists, no tuples) and its numbers are Avro
                # longs and doubles (test_replay holds replay's files to the aggregator's).
                self.writer.put(trajectory)
        await self.writer.send()

    async def on_trajectories(self, tp: TopicPartition, records: list) -> None:
        for r in records:
            if self._outside(r.timestamp):
                continue
            if r.value is None:
                self.summary.tombstones += 1
                continue
            try:  # a record over the record limit points at its chunks (oversized.py)
                value = await oversized.value_of(r, self.fetcher.fetch)
                trajectory = codec.decode(value, expect=Trajectory)
            except (ValueError, ArtifactError):  # DecodeError, ValidationError among them
                self.summary.undecodable += 1
                continue
            self.writer.put(trajectory)
        await self.writer.send()

    async def read(
        self,
        conf: Settings,
        rng: Range | None,
        source: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        topic = SOURCES[source]
        consumer = await open_consumer(conf)
        try:
            if rng is None:
                rng = await capture(conf, consumer, topic, self.summary.since)
            self.summary.total_in_range = rng.total
            if progress is not None:
                progress(0, rng.total)
            handler = self.on_steps if source == "steps" else self.on_trajectories
            tick = (lambda done: progress(done, rng.total)) if progress is not None else None
            try:
                self.summary.records_read = await read_range(consumer, rng, handler, tick)
                await self.writer.drain()
            except (TimeoutError, KafkaError) as exc:
                raise KafkaReadError(
                    f"reading {topic} from {conf.describe()} failed: {exc}"
                ) from exc
        finally:
            try:
                await self.writer.drain()
            except Exception:  # the first error is already being raised
                pass
            await consumer.stop()
            await self.fetcher.close()

    def count(self, source: str) -> None:
        """What was written, and the assemblers' counters summed over the partitions."""
        summary = self.summary
        summary.trajectories_written = self.writer.written
        summary.written_task_ids = self.writer.task_ids
        summary.task_ids = len(self.writer.task_ids)
        if source != "steps":
            return
        counters: dict[str, int] = dict.fromkeys(TrajectoryAssembler().counters, 0)
        for assembler in self.assemblers.values():
            for name, value in assembler.counters.items():
                counters[name] = counters.get(name, 0) + value
            summary.incomplete_attempts += assembler.open_attempts()
        summary.assembler = counters


async def replay(
    conf: clients.Conn,
    sink: BaseSink,
    source: str = "steps",
    since: float | None = None,
    until: float | None = None,
    expire_after: float = DEFAULT_EXPIRE_AFTER,
    forget_done_after: float | None = DEFAULT_FORGET_DONE_AFTER,
    destination: str = "",
    progress: Callable[[int, int], None] | None = None,
    rng: Range | None = None,
) -> ReplaySummary:
    """Run one replay; `progress(done, total)` is called as records are read. The sink is closed at
    the end (so a buffering S3 layout is flushed). `rng`: the offsets to read (a share of a range
    captured once, streams/inspection/replay_workers.py); default: the whole topic
    from the start (or `since`) to its end offsets now."""
    summary = ReplaySummary(
        source=SOURCES[source], destination=destination or repr(sink), since=since, until=until
    )
    started = time.monotonic()
    conf = clients.connection(conf)
    run = _Replay(sink, ArtifactFetcher(conf), summary, expire_after, forget_done_after)
    await run.read(conf, rng, source, progress)
    try:
        await sink.close()
    except Exception as exc:
        raise SinkError(f"closing the sink {summary.destination} failed: {exc}") from exc
    run.count(source)
    summary.seconds = time.monotonic() - started
    return summary


async def capture(conf: clients.Conn, consumer: Any, topic: str, since: float | None) -> Range:
    """What a replay reads: every partition of `topic` from its start (or the first record at
    or after `since`) to the end offsets now."""
    parts = await topic_partitions(conf, topic)
    try:
        return await capture_range(consumer, parts, since)
    except (TimeoutError, KafkaError) as exc:
        raise KafkaReadError(
            f"cannot read offsets of {topic} at {clients.connection(conf).describe()}: {exc}"
        ) from exc
