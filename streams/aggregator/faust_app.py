"""The aggregator: a faust-streaming app that turns adp.steps into trajectory files.

    adp.steps --agent "assemble" (TrajectoryAssembler, state in Faust table "assembly")-->
        adp.trajectories (Avro, key task_id[/sample]), then BaseSink (file | s3)
    adp.trajectories records this app did not write --agent "sink"--> BaseSink

- Agent "assemble" reads adp.steps (raw bytes, concurrency 1: faust-streaming #606) in batches
  (`take_events`: up to BATCH_MAX events or BATCH_WITHIN seconds), decodes them with
  adp.schemas.codec and feeds assembly.TrajectoryAssembler, partition by partition with
  scope = partition. Its state is a Faust table (memory store, changelog topic
  <app_id>-assembly-changelog, as many partitions as adp.steps has on the broker: _prepare), so
  a kill -9'd aggregator resumes where its changelog and committed offsets left it.
- The assembler writes into one StagedStore (staged_store.py). A batch's writes reach the table
  only AFTER every trajectory the batch completed is acknowledged on adp.trajectories, and the
  batch's offsets are acked only after that (Faust acks a take_events batch when the
  agent asks for the next one): a crash in between replays the events and publishes the same
  trajectories again (same bytes), never loses one. Each key is written once per batch, into
  the changelog partition of the events that wrote it.
- The assemble agent writes the trajectories it published with the sink (writer.py:
  `store`, then `flush()`) once they are acknowledged and before
  the batch's state reaches the table. Agent "sink" reads adp.trajectories in batches and
  writes the records no aggregator of this app wrote (adp verify's, another app's) the same way
  before the batch can be acked, so nothing acknowledged is only in a buffer.
- Bytes that do not decode, or events that break the contract, go to adp.dlq with the original
  bytes and the headers of streams/kafka/dlq.py.
- A sink that cannot be written (full disk, read-only folder, S3 down) pauses the agent that
  writes, its batch unacknowledged, until the same batch is written (sink_outage.py); only a
  bug escapes an agent.
- Faust's bugs are worked around in streams/aggregator/faust_guard.py: records it skips are
  read back (SkipGuard), and an agent that crashes ends the process at once with a non-zero exit
  status, its batch unacknowledged.
- Expiry runs in event time inside the assembler (see assembly.py): no timers write to
  the table, so every table write follows events of the same partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError

from adp.core import metrics
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Trajectory
from adp.streams.aggregator.assembly import (
    InvalidEvent,
    TrajectoryAssembler,
)
from adp.streams.aggregator.faust_guard import (
    STALL_CHECK_EVERY,
    SkipGuard,
    exit_on_crash,
)
from adp.streams.aggregator.lifecycle import (
    TABLE_NAME,
    AggregatorConfig,
    build_app,
    run_until_stopped,
)
from adp.streams.aggregator.staged_store import StagedStore
from adp.streams.aggregator.writer import TrajectoryWriter
from adp.streams.kafka import oversized
from adp.streams.kafka.artifacts import ArtifactError, ArtifactFetcher
from adp.streams.kafka.dlq import dlq_headers
from adp.streams.kafka.topics import DLQ, STEPS, TRAJECTORIES

log = logging.getLogger(__name__)

# A batch is what Faust delivered within BATCH_WITHIN seconds (at most BATCH_MAX events): the
# longer it collects, the more of a task's writes coalesce into one table write (a task that
# starts and finishes within a batch writes only its done record), at the price of that much
# latency on a quiet stream. Under a backlog a batch fills while the previous one is acked
# either way: the aggregator's throughput was the same at 0.25 s and 0.1 s. On a stream with room
# to spare 0.1 s halved the finished -> file latency (p50 1.14 -> 0.52 s); where the runtimes
# saturate both cores it did not move (p50 ~0.6 s, p99 1.1-1.3 s).
BATCH_MAX = 5000  # step events per assemble batch
BATCH_WITHIN = 0.1  # seconds a batch waits to fill
SINK_BATCH_MAX = 1000  # trajectories per sink batch
SINK_BATCH_WITHIN = 0.05
# assembler counter -> adp_aggregator_dropped_total{reason}
DROP_REASONS = {
    "duplicates_dropped": "duplicate",
    "late_events_dropped": "late",
    "attempts_superseded": "superseded",
    "attempts_expired": "expired",
    "inconsistent_attempts": "inconsistent",
}


class Aggregator:
    """Builds the Faust app for one configuration; `run()` blocks until SIGTERM/SIGINT (or an
    agent crashes: then it exits with AGENT_CRASH_EXIT)."""

    def __init__(self, config: AggregatorConfig) -> None:
        self.config = config
        self.stats = {
            "trajectories_published": 0,
            "trajectories_written": 0,
            "dlq": 0,
            "table_writes": 0,
        }
        self.guard = SkipGuard(config.connection, config.app_id, STEPS)
        self._dropped_seen = dict.fromkeys(DROP_REASONS, 0)
        self.artifacts = ArtifactFetcher(config.connection)  # bytes of files steps wrote
        self.app = app = build_app(config)
        self.steps = app.topic(STEPS, key_serializer="raw", value_serializer="raw")
        self.trajectories = app.topic(TRAJECTORIES, key_serializer="raw", value_serializer="raw")
        self.dlq = app.topic(DLQ, key_serializer="raw", value_serializer="raw")
        self.table = app.Table(
            TABLE_NAME,
            partitions=config.step_partitions,
            key_type=str,
            value_type=None,
            help="TrajectoryAssembler state: per task, per step, done records",
        )
        self.staged = StagedStore(self.table)
        self.assembler = TrajectoryAssembler(
            store=self.staged,
            expire_after=config.expire_after,
            forget_done_after=config.forget_done_after,
        )
        self.health = metrics.Health(
            f"aggregator {config.app_id}", busy=lambda: self.assembler.in_flight > 0
        )
        self.writer = TrajectoryWriter(
            config.sink, self.artifacts, self.stats, self.health, config.app_id
        )
        app.agent(self.steps, name="assemble", concurrency=1)(exit_on_crash(self._assemble_agent))
        app.agent(self.trajectories, name="sink", concurrency=1)(exit_on_crash(self._sink_agent))
        app.timer(config.log_every, name="report")(self._report)
        app.timer(STALL_CHECK_EVERY, name="stall-watch")(self._refetch_stalled)
        app.task(self._on_startup)
        app.task(self._serve_metrics)
        app.on_partitions_revoked.connect(self._forget_offsets)
        app.on_partitions_assigned.connect(self._forget_offsets)
        app.on_before_shutdown.connect(self._on_shutdown)

    # -- adp.steps -> adp.trajectories ---------------------------------------------------------
    async def _assemble_agent(self, stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            self.guard.batch_started()
            try:
                await self.on_batch([event.message for event in events])
            finally:
                self.guard.batch_done()

    async def _forget_offsets(self, *_: Any, **__: Any) -> None:
        self.guard.forget()
        self.assembler.reindex()  # the table's partitions change with the assignment

    async def _refetch_stalled(self) -> None:
        await self.guard.refetch_stalled(self.app.consumer)

    async def on_batch(self, messages: list[Any]) -> None:
        """Assemble one batch of adp.steps records (in delivery order); returns once its
        trajectories and dead letters are acknowledged and its state is in the table."""
        began = time.monotonic()
        by_partition: dict[int, list[Any]] = {}
        for message in messages:
            batch = by_partition.setdefault(message.partition, [])
            batch.extend(await self.guard.missed_before(message))
            batch.append(message)
        done: list[Trajectory] = []
        dead: list[tuple[Any, str]] = []
        for partition, records in by_partition.items():
            self.staged.scope = partition
            for record in records:
                try:
                    event, raw = codec.decode_record(record.value, expect=StepEvent)
                except (codec.DecodeError, ValidationError) as exc:
                    dead.append((record, f"undecodable StepEvent: {exc}"))
                    continue
                try:
                    done.extend(self.assembler.feed(event, scope=partition, raw=raw))
                except InvalidEvent as exc:
                    dead.append((record, f"invalid StepEvent: {exc}"))
        t_fed = time.monotonic()
        metrics.AGGREGATOR_EVENTS.inc(len(messages))
        metrics.AGGREGATOR_RECOVERED.inc(self.guard.recovered - self._recovered_seen)
        self._recovered_seen = self.guard.recovered
        self._count_drops()
        self.health.progress()
        await asyncio.gather(self.publish(done), self.to_dlq(dead))
        # written before the table learns these tasks are done: see streams/trajectory_writer
        await self.writer.write(done)
        t_pub = time.monotonic()
        changes: list[tuple[int, str, Any]] = []
        self.staged.apply(
            lambda p, k, v: changes.append((p, k, v)), lambda p, k: changes.append((p, k, None))
        )
        await self.write_table(changes)
        metrics.AGGREGATOR_BATCH_EVENTS.observe(len(messages))
        metrics.AGGREGATOR_BATCH_SECONDS.observe(time.monotonic() - began)
        log.debug(
            "batch of %d events: assembled in %.2fs, %d trajectories acked and written "
            "in %.2fs, %d table writes acked in %.2fs",
            len(messages),
            t_fed - began,
            len(done),
            t_pub - t_fed,
            len(changes),
            time.monotonic() - t_pub,
        )

    _recovered_seen = 0

    def _count_drops(self) -> None:
        for counter, reason in DROP_REASONS.items():
            now = self.assembler.counters[counter]
            if now > self._dropped_seen[counter]:
                metrics.AGGREGATOR_DROPPED.labels(reason).inc(now - self._dropped_seen[counter])
                self._dropped_seen[counter] = now

    async def write_table(self, changes: list[tuple[int, str, Any]]) -> None:
        """Apply (partition, key, value or None to delete) to the table and its changelog, in
        order, and wait until the broker has every changelog record. What Table.__setitem__
        does, but with the changelog partition named rather than taken from Faust's "current
        event" (a batch holds several partitions), serialized with the table's own codecs and
        handed to the producer together (see `_send`)."""
        table, topic = self.table, self.table.changelog_topic
        pending = []
        for partition, key, value in changes:
            raw_key = topic.prepare_key(key, table.key_serializer)[0]
            if value is None:
                table.data.pop(key, None)
                raw_value = None
            else:
                table.data[key] = value
                raw_value = topic.prepare_value(value, table.value_serializer)[0]
            pending.append(await self._send(topic.get_topic_name(), raw_key, raw_value, partition))
        await asyncio.gather(*pending)
        self.stats["table_writes"] += len(changes)
        metrics.AGGREGATOR_TABLE_WRITES.inc(len(changes))

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Any = None,
    ) -> Any:
        """Hand one serialized record to Faust's producer (the client Faust built from
        clients.faust_settings); returns the future of its acknowledgement. Topic.send does the
        same through Faust's per-message machinery (PendingMessage, callbacks, sensors), which
        cost more than the send itself at the aggregator's record rates."""
        return await self.app.producer.send(
            topic, key, value, partition=partition, timestamp=None, headers=headers
        )

    async def publish(self, trajectories: list[Trajectory]) -> None:
        """Send every trajectory, then wait until the broker acknowledged all of them."""
        if not trajectories:
            return
        pending = []
        limit = oversized.record_limit(self.config.connection.max_message_bytes)
        for t in trajectories:
            pending.append(  # one over the record limit goes to adp.artifacts in chunks first
                await oversized.send(
                    _AiokafkaSend(self),
                    TRAJECTORIES,
                    codec.encode(t),
                    t.key.encode(),
                    headers=self.writer.headers,
                    limit=limit,
                )
            )
        await asyncio.gather(*pending)  # acknowledged before the tasks' state is dropped
        self.stats["trajectories_published"] += len(trajectories)
        for t in trajectories:
            metrics.TRAJECTORIES.labels(t.task_type, str(t.success).lower()).inc()
            metrics.VERDICTS.labels(t.task_type, t.verdict_status).inc()
            log.debug("published trajectory %s", t.key)

    # -- adp.trajectories -> sink --------------------------------------------------------------
    async def _sink_agent(self, stream: Any) -> None:
        async for events in stream.take_events(SINK_BATCH_MAX, within=SINK_BATCH_WITHIN):
            await self.on_trajectories([event.message for event in events])

    async def on_trajectories(self, messages: list[Any]) -> None:
        """Write one batch of adp.trajectories records this process did not publish and flush
        the sink: when this returns, every trajectory of the batch is stored and the batch may
        be acked."""
        good: list[Trajectory] = []
        dead: list[tuple[Any, str]] = []
        for message in messages:
            if message.value is None:  # a compaction tombstone: nothing to write
                continue
            if self.writer.written_by_app(message.headers):
                continue  # an assemble agent of this app wrote it
            try:
                value = await oversized.value_of(message, self.artifacts.fetch)
                good.append(codec.decode(value, expect=Trajectory))
            except (ValueError, ArtifactError) as exc:  # DecodeError, ValidationError among them
                dead.append((message, f"undecodable Trajectory: {exc}"))
        await self.to_dlq(dead)
        await self.writer.write(good)

    async def to_dlq(self, dead: list[tuple[Any, str]]) -> None:
        pending = []
        for message, reason in dead:
            headers = dlq_headers(
                reason, message.topic, message.partition, message.offset, component="aggregator"
            )
            pending.append(
                await self.dlq.send(key=message.key, value=message.value or b"", headers=headers)
            )
            log.warning(
                "%s[%d]@%d -> %s: %s", message.topic, message.partition, message.offset, DLQ, reason
            )
        await asyncio.gather(*pending)
        self.stats["dlq"] += len(dead)
        if dead:
            metrics.DLQ_MESSAGES.labels("aggregator").inc(len(dead))

    # -- lifecycle and reporting ---------------------------------------------------------------
    async def _on_shutdown(self, *_: Any, **__: Any) -> None:
        await self.artifacts.close()
        await self.config.sink.close()

    async def _on_startup(self) -> None:
        forget = self.config.forget_done_after
        log.info(
            "aggregator %s started: %s -> %s -> sink %r (expire attempts after %.0fs, "
            "forget finished tasks %s)",
            self.config.app_id,
            STEPS,
            TRAJECTORIES,
            self.config.sink,
            self.config.expire_after,
            "never" if forget is None else f"after {forget:.0f}s",
        )

    async def _report(self) -> None:
        log.info("counters: %s", " ".join(f"{k}={v}" for k, v in self.counters().items()))

    def counters(self) -> dict[str, int]:
        return {
            **self.assembler.counters,
            **self.stats,
            "skipped_records_recovered": self.guard.recovered,
            "stalled_refetches": self.guard.refetches,
        }

    async def _serve_metrics(self) -> None:
        self._metrics_server = await metrics.serve(self.health, self.config.metrics_port)

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (lifecycle.run_until_stopped)."""
        run_until_stopped(self)


class _AiokafkaSend:
    """aiokafka's `send(topic, value, key=, headers=)` over the aggregator's Faust producer, for
    the helpers written against it (oversized.send, artifacts.publish)."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> Any:
        return await self.aggregator._send(topic, key, value, headers=headers)
