"""The aggregator: a faust-streaming app that turns adp.steps into trajectory files.

    adp.steps --agent "assemble" (TrajectoryAssembler, state in Faust table "assembly")-->
        adp.trajectories (Avro, key task_id) --agent "sink"--> BaseSink (file | s3)

- Agent "assemble" reads adp.steps (raw bytes, concurrency 1: faust-streaming #606), decodes with
  adp.schemas.codec and feeds streams.assembly.TrajectoryAssembler with scope = partition. Its state is a
  Faust table (memory store, changelog topic <app_id>-assembly-changelog, 6 partitions like
  adp.steps), so a kill -9'd aggregator resumes where its changelog and committed offsets left it.
  The assembler's writes for one event are staged and reach the table only AFTER the trajectory
  that event completed is acknowledged on adp.trajectories: a crash in between replays the
  events and publishes the same trajectory again (same bytes), never loses it.
- Agent "sink" reads adp.trajectories and writes each trajectory with the sink; its offset is
  acked only after the write returned, so a crash between publish and write loses nothing.
- Bytes that do not decode, or events that break the contract, go to adp.dlq with the original
  bytes and headers adp-reason, adp-source-topic, adp-source-partition, adp-source-offset.
- Skipped-record guard: faust-streaming 0.15.3 can drop records it already fetched during
  start-up recovery or a rebalance. adp.steps offsets are contiguous, so the agent notices a
  hole and reads it itself before going on (streams/faust_guard.py).
- Expiry runs in event time inside the assembler (see streams/assembly.py): no timers write to
  the table, so every table write happens in the context of an event of the same partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from pydantic import ValidationError

from adp.schemas import codec
from adp.core import metrics
from adp.core.settings import settings
from adp.schemas.contracts import StepEvent, Trajectory
from adp.connectors.sinks.base import BaseSink, make_sink
from adp.streams.assembly import (DEFAULT_EXPIRE_AFTER, InvalidEvent, StagedStore,
                              TrajectoryAssembler)
from adp.streams.dlq import dlq_headers
from adp.streams.faust_guard import committed_offset
from adp.streams.reader import KafkaReadError, read_partition
from adp.streams.topics import AGGREGATOR_GROUP, DLQ, STEPS, TRAJECTORIES

log = logging.getLogger(__name__)

DEFAULT_APP_ID = AGGREGATOR_GROUP
STALL_CHECK_EVERY = 5.0  # seconds between checks for partitions Faust stopped delivering
STALL_AFTER = 10.0  # a partition with records pending and none delivered for this long
TABLE_NAME = "assembly"
STEP_PARTITIONS = 6


@dataclass
class AggregatorConfig:
    bootstrap: str
    sink: BaseSink
    app_id: str = DEFAULT_APP_ID
    expire_after: float = DEFAULT_EXPIRE_AFTER
    replication: int = 1
    metrics_port: int | None = None
    log_every: float = 30.0
    session_timeout: float = 30.0
    datadir: Path | None = None


class Aggregator:
    """Builds the Faust app for one configuration; `run()` blocks until SIGTERM/SIGINT."""

    def __init__(self, config: AggregatorConfig) -> None:
        import faust  # heavy import: only when the aggregator really runs

        self.config = config
        self.assembler = TrajectoryAssembler(expire_after=config.expire_after)
        self.stats = {"trajectories_published": 0, "trajectories_written": 0, "dlq": 0,
                      "skipped_records_recovered": 0, "stalled_refetches": 0}
        self._next_offset: dict[int, int] = {}  # adp.steps partition -> next expected offset
        self._last_seen: dict[int, float] = {}  # adp.steps partition -> monotonic time
        self.health = metrics.Health(f"aggregator {config.app_id}",
                                     busy=lambda: self.assembler.in_flight > 0)
        datadir = config.datadir or settings().home / "aggregator"
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = app = faust.App(
            config.app_id,
            broker=[f"kafka://{h.strip()}" for h in config.bootstrap.split(",") if h.strip()],
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            topic_partitions=STEP_PARTITIONS,
            topic_replication_factor=config.replication,
            key_serializer="raw",
            value_serializer="raw",
            producer_acks=-1,
            producer_compression_type="gzip",
            consumer_auto_offset_reset="earliest",
            # A kill -9'd member holds its partitions until its session times out.
            broker_session_timeout=config.session_timeout,
            broker_heartbeat_interval=min(3.0, config.session_timeout / 3),
        )
        self.steps = app.topic(STEPS, key_serializer="raw", value_serializer="raw")
        self.trajectories = app.topic(TRAJECTORIES, key_serializer="raw", value_serializer="raw")
        self.dlq = app.topic(DLQ, key_serializer="raw", value_serializer="raw")
        self.table = app.Table(TABLE_NAME, partitions=STEP_PARTITIONS, key_type=str,
                               value_type=None,
                               help="TrajectoryAssembler state: per task, per step, done records")
        app.agent(self.steps, name="assemble", concurrency=1)(self._assemble_agent)
        app.agent(self.trajectories, name="sink", concurrency=1)(self._sink_agent)
        app.timer(config.log_every, name="report")(self._report)
        app.timer(STALL_CHECK_EVERY, name="stall-watch")(self._refetch_stalled)
        app.task(self._on_startup)
        app.task(self._serve_metrics)
        app.on_partitions_revoked.connect(self._forget_offsets)
        app.on_partitions_assigned.connect(self._forget_offsets)
        app.on_before_shutdown.connect(self._on_shutdown)

    # -- agents --------------------------------------------------------------------------------
    async def _assemble_agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self._fill_gap(event.message)
            await self.on_step(event.message, event.value)
            self._next_offset[event.message.partition] = event.message.offset + 1
            self._last_seen[event.message.partition] = time.monotonic()

    async def _forget_offsets(self, *_: Any, **__: Any) -> None:
        self._next_offset.clear()  # after a rebalance Faust seeks back to committed offsets
        self._last_seen.clear()

    async def _fill_gap(self, message: Any) -> None:
        """Feed records Faust skipped before this one (streams/faust_guard.py)."""
        expected = self._next_offset.get(message.partition)
        if expected is None:
            # first record of this partition since the (re)assignment: it must be the group's
            # committed offset (asked of the broker: Faust's own map may not be filled yet)
            expected = await _until_broker_answers(
                committed_offset, self.config.bootstrap, self.config.app_id, message.topic,
                message.partition)
        if message.offset <= expected:
            return
        missed = await _until_broker_answers(read_partition, self.config.bootstrap,
                                             message.topic, message.partition, expected,
                                             message.offset)
        if missed:
            log.warning("%s[%d]: the consumer skipped %d records in offsets %d..%d; "
                        "feeding them first", message.topic, message.partition, len(missed),
                        expected, message.offset - 1)
            self.stats["skipped_records_recovered"] += len(missed)
        for record in missed:
            await self.on_step(record, record.value)

    async def _refetch_stalled(self) -> None:
        """The other half of the skip guard: records Faust skipped at the END of a partition
        are never followed by one that reveals the hole. A partition whose end lies beyond
        what the agent has seen, and that delivered nothing for a while, is sought back to
        the next expected offset so Faust fetches the rest again."""
        try:
            await self._seek_stalled_partitions()
        except Exception as exc:  # a broker outage must not crash the app; next round retries
            log.warning("stall check failed (%s: %s); retrying in %.0fs", type(exc).__name__,
                        exc, STALL_CHECK_EVERY)

    async def _seek_stalled_partitions(self) -> None:
        consumer = self.app.consumer
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            if tp.topic != STEPS or now - self._last_seen.get(tp.partition, now) < STALL_AFTER:
                self._last_seen.setdefault(tp.partition, now)
                continue
            end = consumer.highwater(tp)
            expected = self._next_offset.get(tp.partition)
            if expected is None:
                expected = await committed_offset(self.config.bootstrap, self.config.app_id,
                                                  tp.topic, tp.partition)
            if end is not None and end > expected:
                log.warning("%s[%d]: %d records up to offset %d not delivered for %.0fs; "
                            "fetching again from %d", tp.topic, tp.partition, end - expected,
                            end - 1, now - self._last_seen[tp.partition], expected)
                self.stats["stalled_refetches"] += 1
                self._last_seen[tp.partition] = now
                await consumer.seek(tp, expected)

    async def on_step(self, message: Any, value: bytes | None) -> None:
        try:
            step_event = codec.decode(value, expect=StepEvent)
        except (codec.DecodeError, ValidationError) as exc:
            await self.to_dlq(message, value, f"undecodable StepEvent: {exc}")
            return
        log.debug("%s[%d]@%d: %s %s attempt %s%s", message.topic, message.partition,
                  message.offset, step_event.event_type, step_event.task_id,
                  step_event.attempt_id, f" step {step_event.step.step_id}"
                  if step_event.step else "")
        self.health.progress()
        staged = StagedStore(self.table)
        self.assembler.store = staged
        try:
            done = self.assembler.feed(step_event, scope=message.partition)
        except InvalidEvent as exc:
            await self.to_dlq(message, value, f"invalid StepEvent: {exc}")
            return
        finally:
            self.assembler.store = self.table
        for trajectory in done:
            await self.publish(trajectory)
        staged.apply()

    async def publish(self, trajectory: Trajectory) -> None:
        fut = await self.trajectories.send(key=trajectory.task_id.encode(),
                                           value=codec.encode(trajectory))
        await fut  # acknowledged by the broker before the task's state is dropped
        self.stats["trajectories_published"] += 1
        metrics.TRAJECTORIES.labels(trajectory.task_type, str(trajectory.success).lower()).inc()
        log.debug("published trajectory %s", trajectory.task_id)

    async def _sink_agent(self, stream: Any) -> None:
        async for event in stream.events():
            value = event.value
            if value is None:  # a compaction tombstone: nothing to write
                continue
            try:
                trajectory = codec.decode(value, expect=Trajectory)
            except (codec.DecodeError, ValidationError) as exc:
                await self.to_dlq(event.message, value, f"undecodable Trajectory: {exc}")
                continue
            where = await self.config.sink.write(trajectory)
            self.stats["trajectories_written"] += 1
            self.health.progress()
            log.info("trajectory %s written: %d steps, success=%s, attempt %s -> %s",
                     trajectory.task_id, len(trajectory.steps), trajectory.success,
                     trajectory.metadata.attempt_id, where)

    async def to_dlq(self, message: Any, value: bytes | None, reason: str) -> None:
        headers = dlq_headers(reason, message.topic, message.partition, message.offset,
                              component="aggregator")
        fut = await self.dlq.send(key=message.key, value=value or b"", headers=headers)
        await fut
        self.stats["dlq"] += 1
        metrics.DLQ_MESSAGES.labels("aggregator").inc()
        log.warning("%s[%d]@%d -> %s: %s", message.topic, message.partition, message.offset,
                    DLQ, reason)

    # -- lifecycle and reporting ---------------------------------------------------------------
    async def _on_shutdown(self, *_: Any, **__: Any) -> None:
        await self.config.sink.close()

    async def _on_startup(self) -> None:
        log.info("aggregator %s started: %s -> %s -> sink %r (expire after %.0fs)",
                 self.config.app_id, STEPS, TRAJECTORIES, self.config.sink,
                 self.config.expire_after)

    async def _report(self) -> None:
        log.info("counters: %s", " ".join(f"{k}={v}" for k, v in self.counters().items()))

    def counters(self) -> dict[str, int]:
        return {**self.assembler.counters, **self.stats}

    async def _serve_metrics(self) -> None:
        self._metrics_server = await metrics.serve(self.health, self.config.metrics_port)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The assembler's counters as Prometheus counters (adp_aggregator_<name>_total)."""
        for name, value in self.counters().items():
            family = CounterMetricFamily(f"adp_aggregator_{name}", f"aggregator: {name}")
            family.add_metric([], value)
            yield family

    def run(self) -> None:
        """Run until SIGTERM/SIGINT; mode's Worker stops the app cleanly on either."""
        from faust import Worker

        REGISTRY.register(self)
        if log.isEnabledFor(logging.DEBUG):  # -v: also Faust's own story (rebalances, recovery)
            logging.getLogger("faust").setLevel(logging.INFO)
        worker = Worker(self.app, loglevel="WARNING", quiet=True, redirect_stdouts=False,
                        override_logging=False)
        worker.spinner = None  # it writes terminal escapes to stdout
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            log.info("aggregator stopped (%s)", " ".join(
                f"{k}={v}" for k, v in self.counters().items()))
            if exc.code not in (0, None):
                raise


async def _until_broker_answers(call: Any, *args: Any, pause: float = 1.0) -> Any:
    """Await `call(*args)` until the broker answers: a hole must be read, not skipped, so the
    agent waits out a broker outage here."""
    while True:
        try:
            return await call(*args)
        except (KafkaError, KafkaReadError, OSError, asyncio.TimeoutError) as exc:
            log.warning("waiting for the broker (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(pause)


def changelog_topic(app_id: str) -> str:
    """The Faust table's changelog topic (Faust names it <app_id>-<table>-changelog)."""
    return f"{app_id}-{TABLE_NAME}-changelog"


async def _prepare(bootstrap: str, replication: int | None, app_id: str) -> int:
    """Make sure the platform topics and the table's changelog exist; returns the replication
    factor to use. The changelog is created here, before Faust starts: left to Faust, a loaded
    machine can see the table's first write verify partitions against a consumer whose metadata
    does not know the new topic yet (PartitionsMismatch "... has 0 partitions"), which crashes
    the agent."""
    from adp.streams.admin import cluster_broker_ids, ensure_topics
    from adp.streams.topics import TopicSpec, platform_topics

    if replication is None:
        replication = min(3, len(await cluster_broker_ids(bootstrap)))
    specs = platform_topics(min_insync_replicas=min(2, replication))
    durable = next(s for s in specs if s.name == STEPS).configs
    specs.append(TopicSpec(changelog_topic(app_id), STEP_PARTITIONS,
                           {**durable, "retention.ms": "-1", "cleanup.policy": "compact"}))
    await ensure_topics(bootstrap, replication=replication, specs=specs)
    return replication


@click.command("aggregate")
@click.option("--sink", "sink_kind", type=click.Choice(["file", "s3"]), default="file",
              show_default=True, help="where trajectories go")
@click.option("--out", "out", default=None,
              help="folder for --sink file (default: $ADP_OUTPUT_DIR or output/trajectories), "
                   "s3://bucket/prefix for --sink s3")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: $ADP_BOOTSTRAP)")
@click.option("--expire-after", type=float, default=DEFAULT_EXPIRE_AFTER, show_default=True,
              help="drop an attempt with no new event for this many seconds (event time)")
@click.option("--metrics-port", type=int, default=None,
              help="port of /metrics and /health [ADP_METRICS_PORT or 8001, next free]; 0: off")
@click.option("--app-id", default=DEFAULT_APP_ID, show_default=True,
              help="Faust app id = consumer group; names the changelog topic")
@click.option("--replication", type=int, default=None,
              help="replication of the changelog topic (default: min(3, brokers))")
@click.option("--session-timeout", type=float, default=30.0, show_default=True,
              help="consumer session timeout (s): how long a dead aggregator holds partitions")
def aggregate_command(sink_kind: str, out: str | None, bootstrap: str | None,
                      expire_after: float, metrics_port: int | None, app_id: str,
                      replication: int | None, session_timeout: float) -> None:
    """Assemble step events (adp.steps) into trajectories (adp.trajectories) and write them with
    a sink. Stops cleanly on SIGTERM/SIGINT; a restarted aggregator resumes from its table."""
    conf = settings()
    bootstrap = bootstrap or conf.bootstrap
    destination = out or (str(conf.output_dir) if sink_kind == "file" else None)
    if destination is None:
        raise click.UsageError("--sink s3 needs --out s3://bucket/prefix")
    try:
        sink = make_sink(sink_kind, destination)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    started = time.monotonic()
    try:
        replication = asyncio.run(_prepare(bootstrap, replication, app_id))
    except Exception as exc:  # no broker: say so instead of a traceback
        raise click.ClickException(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    log.info("topics ready on %s in %.1fs", bootstrap, time.monotonic() - started)
    Aggregator(AggregatorConfig(bootstrap=bootstrap, sink=sink, app_id=app_id,
                                expire_after=expire_after, replication=replication,
                                metrics_port=metrics_port,
                                session_timeout=session_timeout)).run()
