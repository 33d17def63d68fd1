"""The runtime consumer loop: tasks in from adp.tasks.<type>, step events out to adp.steps.

Each task taken runs as an Attempt (streams/attempt.py), which puts its step events on the
wire.

Delivery discipline (README, "Delivery guarantees"):
- a plain aiokafka consumer in group adp-runtime-<type>, auto-commit off;
- up to `concurrency` tasks run at once; at the limit every assigned partition is paused, and
  the loop keeps polling so the consumer never exceeds max.poll.interval.ms however long a
  task runs;
- a task's offset counts as done only after its finished event is acknowledged by the broker
  (acks=all), and commits advance per partition over the contiguous prefix of done offsets
  (streams/offsets.py);
- on rebalance, tasks of revoked partitions are cancelled without a finished event (another
  consumer redoes them under a new attempt_id; the aggregator drops the orphan attempt) and
  nothing is committed past them;
- a task that keeps killing its process is quarantined, then dead-lettered (streams/poison.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from adp.schemas import codec
from adp.core import metrics
from adp.schemas.contracts import Task
from adp.runtimes.base import Outcome, Runtime
from adp.core.limit import AdaptiveLimit
from adp.streams import topics
from adp.streams.attempt import Attempt
from adp.streams.dlq import dlq_headers
from adp.streams.offsets import PartitionOffsets
from adp.streams.poison import PoisonLedger

log = logging.getLogger(__name__)


def default_runtime_id(task_type: str) -> str:
    return f"{task_type}-{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerStats:
    received: int = 0
    finished: int = 0
    succeeded: int = 0
    cancelled: int = 0
    dead_lettered: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


class RuntimeWorker:
    def __init__(self, runtime: Runtime, task_type: str, bootstrap: str, concurrency: int = 4,
                 runtime_id: str | None = None, group_id: str | None = None,
                 poll_interval_ms: int = 200, poison_limit: int = 3,
                 limit: AdaptiveLimit | None = None,
                 consumer_options: dict | None = None):
        self.runtime, self.task_type = runtime, task_type
        self.bootstrap, self.concurrency = bootstrap, max(1, concurrency)
        self.runtime_id = runtime_id or default_runtime_id(task_type)
        self.group_id = group_id or topics.runtime_group(task_type)
        self.poll_interval_ms = poll_interval_ms
        self.poison_limit = poison_limit
        # The LLM client lowers this limit on 429s and raises it on successes (AIMD); the
        # worker takes new tasks only below it, so a throttled endpoint slows intake.
        self.limit = limit
        # extra AIOKafkaConsumer settings (e.g. max_poll_interval_ms, session_timeout_ms,
        # heartbeat_interval_ms); they override the defaults below
        self.consumer_options = dict(consumer_options or {})
        self._capacity = self.concurrency
        self.ledgers: dict[TopicPartition, PoisonLedger] = {}
        # quarantine: a suspect task runs alone; `_open` is cleared while it does
        self._open = asyncio.Event()
        self._open.set()
        self._executing = 0
        self._idle = asyncio.Condition()
        self._quarantine = asyncio.Lock()
        self.stats = WorkerStats()
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.inflight: dict[asyncio.Task, tuple[TopicPartition, int]] = {}
        self._commit_lock = asyncio.Lock()
        # bumped on every revocation: records fetched before one are not ours to start
        self._revocations = 0
        self._slot_freed = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.health = metrics.Health(f"runtime {self.runtime_id}",
                                     busy=lambda: bool(self.inflight))
        self.health.checks += [self._broker_check, self._assignment_check]
        self._broker_ok: tuple[bool, str] = (True, "")

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, drain_timeout: float = 30.0,
                  metrics_port: int | None = None) -> WorkerStats:
        server = await metrics.serve(self.health, metrics_port)
        try:
            return await self._run(stop, drain_timeout)
        finally:
            if server:
                await server.cleanup()

    async def _run(self, stop: asyncio.Event, drain_timeout: float) -> WorkerStats:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, max_request_size=33554432, compression_type="gzip",
        )
        self.consumer = AIOKafkaConsumer(**{
            "bootstrap_servers": self.bootstrap, "group_id": self.group_id,
            "client_id": self.runtime_id, "enable_auto_commit": False,
            "auto_offset_reset": "earliest", "max_partition_fetch_bytes": 33554432,
            "fetch_max_bytes": 67108864, **self.consumer_options,
        })
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.producer.start()
        await self.admin.start()
        try:
            self.consumer.subscribe([topics.task_topic(self.task_type)],
                                    listener=_Rebalance(self))
            await self.consumer.start()
            try:
                async with self.runtime:
                    log.info("runtime %s consuming %s as group %s, concurrency %d",
                             self.runtime_id, topics.task_topic(self.task_type),
                             self.group_id, self.concurrency)
                    watcher = asyncio.create_task(self._watch_lag(stop))
                    try:
                        await self._poll_loop(stop)
                        await self._drain(drain_timeout)
                    finally:
                        watcher.cancel()
            finally:
                await self.consumer.stop()
        finally:
            await self.admin.close()
            await self.producer.stop()
        log.info("runtime %s stopped: %s", self.runtime_id, self.stats)
        return self.stats

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                free = self.capacity() - len(self.inflight) if self._open.is_set() else 0
                assigned = self.consumer.assignment()
                if free <= 0:
                    self.consumer.pause(*assigned)
                else:
                    self.consumer.resume(*assigned)
                # Polling goes on while paused: it is what keeps this member in the group.
                batch = await self.consumer.getmany(
                    timeout_ms=self.poll_interval_ms, max_records=max(free, 1)
                )
                # aiokafka returns records only outside a reassignment, so these belong to
                # the current assignment; a revocation after this point moves them (eager
                # rebalance: the next assignment re-reads positions from the commit)
                epoch = self._revocations
                for tp, records in batch.items():
                    await self._start_batch(tp, records, epoch)
                if free <= 0 and not batch:
                    self._slot_freed.clear()
                    waiter = asyncio.ensure_future(self._slot_freed.wait())
                    await asyncio.wait({waiter, stopping}, timeout=self.poll_interval_ms / 1000,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
        finally:
            stopping.cancel()

    def capacity(self) -> int:
        current = min(self.concurrency, self.limit.current) if self.limit else self.concurrency
        if current != self._capacity:
            log.info("concurrency %s from %d to %d (LLM endpoint %s)",
                     "lowered" if current < self._capacity else "raised", self._capacity,
                     current, "throttling" if current < self._capacity else "recovering")
            self._capacity = current
            metrics.CONCURRENCY_LIMIT.labels(self.task_type).set(current)
        return current

    async def _drain(self, timeout: float) -> None:
        """On shutdown let running tasks finish for a while, then cancel the rest (uncommitted:
        they will be redone)."""
        if not self.inflight:
            return
        log.info("waiting up to %.0fs for %d running task(s)", timeout, len(self.inflight))
        _, pending = await asyncio.wait(set(self.inflight), timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            # cancelled on purpose, not killed: say nothing is running, so no strikes
            await self._commit(list(self.offsets), clean=True)

    # ---- one task --------------------------------------------------------------------------

    async def _start_batch(self, tp: TopicPartition, records: list[ConsumerRecord],
                           epoch: int) -> None:
        # A rebalance can run (in aiokafka's coordinator task) after getmany() returned these
        # records, or while the commit below is awaited: then they belong to whoever owns the
        # partition now, which fetches them again from the committed offset. Starting them
        # here too would run the task twice.
        if self._revocations != epoch:
            return
        tracker = self.offsets.setdefault(tp, PartitionOffsets())
        for record in records:
            tracker.start(record.offset)
        # Record what is about to run before it runs: if it kills this process, the next
        # owner of the partition finds it in the commit metadata (streams/poison.py).
        await self._commit([tp])
        if self._revocations != epoch:  # revoke() already dropped this partition's tracker
            log.info("not starting %d task(s) of %s[%d]: the partition was revoked meanwhile",
                     len(records), tp.topic, tp.partition)
            return
        for record in records:
            self.stats.received += 1
            metrics.TASKS_RECEIVED.labels(self.task_type).inc()
            metrics.TASKS_IN_FLIGHT.labels(self.task_type).inc()
            task = asyncio.create_task(self._handle(tp, record),
                                       name=f"task@{tp.topic}-{tp.partition}:{record.offset}")
            self.inflight[task] = (tp, record.offset)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.inflight.pop(task, None)
        metrics.TASKS_IN_FLIGHT.labels(self.task_type).dec()
        self._slot_freed.set()

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        try:
            task = codec.decode(record.value, expect=Task)
            if task.task_type != self.task_type:
                raise codec.DecodeError(
                    f"task_type {task.task_type!r} does not belong on {tp.topic}")
        except codec.DecodeError as exc:
            await self._dead_letter(record, str(exc))
            await self._done(tp, record.offset)
            return
        strikes = self.ledgers.get(tp, PoisonLedger()).of(record.offset)
        if strikes >= self.poison_limit:
            await self._dead_letter(record, f"poison: task {task.task_id} was running when its "
                                            f"runtime process died {strikes} times")
            await self._done(tp, record.offset)
            return
        if strikes:
            log.warning("task %s: its runtime died %d time(s) while running it; running it alone",
                        task.task_id, strikes)
        async with self._slot(suspect=strikes > 0):
            attempt = Attempt(self.producer, self.runtime_id, task)
            log.info("task %s: attempt %s started", task.task_id, attempt.attempt_id)
            outcome = await attempt.run(self.runtime)
            self._count(outcome)
            log.info("task %s: finished success=%s steps=%d%s", task.task_id, outcome.success,
                     attempt.steps, f" ({outcome.error_type}: {outcome.error})"
                     if outcome.error_type else "")
        await self._done(tp, record.offset)

    @asynccontextmanager
    async def _slot(self, suspect: bool) -> AsyncIterator[None]:
        """Ordinary tasks run side by side; a suspect waits until nothing else executes and
        runs alone, so only a real poison task collects more strikes."""
        if suspect:
            await self._quarantine.acquire()
            self._open.clear()
            async with self._idle:
                await self._idle.wait_for(lambda: self._executing == 0)
        else:
            await self._open.wait()
        self._executing += 1
        try:
            yield
        finally:
            self._executing -= 1
            async with self._idle:
                self._idle.notify_all()
            if suspect:
                self._open.set()
                self._quarantine.release()

    def _count(self, outcome: Outcome) -> None:
        self.stats.finished += 1
        self.health.progress()
        error_type = str(getattr(outcome.error_type, "value", outcome.error_type or ""))
        metrics.TASKS_FINISHED.labels(self.task_type, "success" if outcome.success else "failure",
                                      error_type).inc()
        if outcome.success:
            self.stats.succeeded += 1
        elif error_type:
            self.stats.by_error[error_type] = self.stats.by_error.get(error_type, 0) + 1

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition,
                    record.offset, reason)
        self.stats.dead_lettered += 1
        metrics.DLQ_MESSAGES.labels("runtime").inc()
        await self.producer.send_and_wait(
            topics.DLQ, record.value, key=record.key, headers=dlq_headers(reason, record.topic, record.partition, record.offset)
        )

    async def _done(self, tp: TopicPartition, offset: int) -> None:
        tracker = self.offsets.get(tp)
        if tracker is None:  # partition was revoked meanwhile; its new owner redoes the task
            return
        tracker.finish(offset)
        self.ledgers.get(tp, PoisonLedger()).clear(offset)
        await self._commit([tp])

    async def _commit(self, partitions: list[TopicPartition], clean: bool = False) -> None:
        """Commit each partition's contiguous done prefix, with the running offsets and strikes
        as metadata. `clean`: report nothing running (tasks were cancelled on purpose)."""
        async with self._commit_lock:
            owned = {}
            for tp in partitions:
                tracker = self.offsets.get(tp)
                if tp not in self.consumer.assignment() or tracker is None \
                        or tracker.committable is None:
                    continue
                ledger = self.ledgers.setdefault(tp, PoisonLedger())
                running = set() if clean else tracker.running_offsets
                owned[tp] = OffsetAndMetadata(
                    tracker.committable, ledger.metadata(running, tracker.committable))
            if owned:
                await self.consumer.commit(owned)

    # ---- health and lag --------------------------------------------------------------------

    def _broker_check(self) -> tuple[bool, str]:
        return self._broker_ok

    def _assignment_check(self) -> tuple[bool, str]:
        # Members beyond the partition count legitimately get nothing; say so, don't fail.
        assigned = self.consumer.assignment() if self.consumer else set()
        self.health.details["partitions"] = sorted(tp.partition for tp in assigned)
        return True, ""

    async def _watch_lag(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Ask the broker for end offsets periodically: gives the lag gauge, and tells /health
        whether the broker answers."""
        while not stop.is_set():
            assigned = list(self.consumer.assignment())
            try:
                ends = await asyncio.wait_for(self.consumer.end_offsets(assigned), every * 2)
                lag = 0
                for tp, end in ends.items():
                    tracker = self.offsets.get(tp)
                    done_below = tracker.committable if tracker and tracker.committable is not None \
                        else await self.consumer.position(tp)
                    lag += max(0, end - done_below)
                metrics.CONSUMER_LAG.labels(self.task_type).set(lag)
                self._broker_ok = (True, "")
            except Exception as exc:  # broker down, partitions moving: report, keep going
                self._broker_ok = (False, f"broker not answering: {type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass

    # ---- rebalance -------------------------------------------------------------------------

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        self._revocations += 1
        victims = [t for t, (tp, _) in self.inflight.items() if tp in revoked]
        for t in victims:
            t.cancel()
        if victims:
            await asyncio.gather(*victims, return_exceptions=True)
            self.stats.cancelled += len(victims)
            log.info("cancelled %d running task(s) of revoked partitions; they will be redone",
                     len(victims))
        # commit what is safely done before the partitions move to another member
        await self._commit([tp for tp in revoked if tp in self.offsets], clean=True)
        for tp in revoked:
            self.offsets.pop(tp, None)
            self.ledgers.pop(tp, None)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Read each new partition's commit metadata: offsets that were running when the last
        owner stopped without a clean commit get a strike."""
        if not assigned:
            return
        committed = await self.admin.list_consumer_group_offsets(
            self.group_id, partitions=list(assigned))
        for tp in assigned:
            meta = committed.get(tp)
            ledger = PoisonLedger.from_metadata(meta.metadata if meta else None,
                                                meta.offset if meta and meta.offset >= 0 else None)
            self.ledgers[tp] = ledger
            if ledger.strikes:
                log.warning("partition %s[%d]: tasks running when the previous owner died: %s",
                            tp.topic, tp.partition, ledger.strikes)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: RuntimeWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        await self.worker.assigned(set(assigned))
