"""The runtime consumer loop: tasks in from the priority lanes of adp.tasks.<type>, step events
out to adp.steps.

Each task taken runs as an Attempt (streams/runtime/attempt.py), which puts its step events on
the wire. Which fetched task a free slot starts is the intake's choice (streams/runtime/intake.py:
higher lanes first, a minimum share for lower ones).

Delivery discipline (README, "Delivery guarantees"):
- a plain aiokafka consumer in group adp-runtime-<type>, auto-commit off, subscribed to every
  lane topic of the type;
- up to `concurrency` tasks run at once (a task whose agent is done and that only waits for
  the broker's acks holds no slot); a lane's partitions are paused while it has enough
  fetched and unstarted to fill every slot, and the loop keeps polling, at the limit too, so
  the consumer never exceeds max.poll.interval.ms however long a task runs;
- a task's offset counts as done only after its finished event is acknowledged by the broker
  (acks=all), and commits advance per partition over the contiguous prefix of done offsets
  (streams/runtime/offsets.py);
- on rebalance, tasks of revoked partitions are cancelled without a finished event (another
  consumer redoes them under a new attempt_id; the aggregator drops the orphan attempt) and
  nothing is committed past them;
- a task that keeps killing its process is quarantined, then dead-lettered
(streams/runtime/poison.py);
- a dependency's outage (LLM endpoint, sandbox, browser) pauses the process instead of failing
  its tasks: no task starts while it lasts, and the tasks that met it run again once it is over
  (streams/runtime/breaker.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from adp.core import metrics
from adp.core.limit import AdaptiveLimit
from adp.runtimes.base import Outcome, Runtime
from adp.runtimes.verify import VerifyContext
from adp.schemas.contracts import Task
from adp.streams.kafka import authz, clients, topics
from adp.streams.kafka.dlq import dlq_headers
from adp.streams.producer import task_from_record
from adp.streams.runtime.attempt import Attempt
from adp.streams.runtime.breaker import OutageBreaker
from adp.streams.runtime.commits import RuntimeCommits
from adp.streams.runtime.intake import LaneIntake
from adp.streams.runtime.lanes import DEFAULT_MIN_SHARE, check_min_share
from adp.streams.runtime.offsets import PartitionOffsets
from adp.streams.runtime.poison import PoisonLedger, Quarantine
from adp.streams.runtime.watch import RuntimeWatch

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
    def __init__(
        self,
        runtime: Runtime,
        task_type: str,
        conf: clients.Conn,
        concurrency: int = 4,
        runtime_id: str | None = None,
        group_id: str | None = None,
        poll_interval_ms: int = 200,
        poison_limit: int = 3,
        limit: AdaptiveLimit | None = None,
        consumer_options: dict | None = None,
        min_share: float = DEFAULT_MIN_SHARE,
        verify_context: VerifyContext | None = None,
        outages: OutageBreaker | None = None,
    ):
        self.runtime, self.task_type = runtime, task_type
        # verifiers of tasks that name one use this LLM chain and sandbox (made when first used)
        self.verify_context = verify_context or VerifyContext()
        self.conf, self.concurrency = clients.connection(conf), max(1, concurrency)
        self.runtime_id = runtime_id or default_runtime_id(task_type)
        self.group_id = group_id or topics.runtime_group(task_type)
        self.poll_interval_ms = poll_interval_ms
        self.poison_limit = poison_limit
        # each lower priority lane with work gets at least this share of task starts
        self.min_share = check_min_share(min_share, len(topics.LANES))
        # The LLM client lowers this limit on 429s and raises it on successes (AIMD); the
        # worker takes new tasks only below it, so a throttled endpoint slows intake.
        self.limit = limit
        # extra AIOKafkaConsumer settings (e.g. max_poll_interval_ms, session_timeout_ms,
        # heartbeat_interval_ms); they override the defaults below
        self.consumer_options = dict(consumer_options or {})
        self._capacity = self.concurrency
        self.ledgers: dict[TopicPartition, PoisonLedger] = {}
        self.quarantine = Quarantine()  # a suspect task runs alone
        self.stats = WorkerStats()
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.inflight: dict[asyncio.Task, tuple[TopicPartition, int]] = {}
        # tasks whose agent is done and that only wait for their events' acks: no slot
        self._acking: set[asyncio.Task] = set()
        # one commit in flight at a time; what is asked meanwhile rides on the next one
        self.outages = outages or OutageBreaker.from_settings(task_type, self.runtime_id)
        self.committer = RuntimeCommits(
            lambda: self.consumer, self.offsets, self.ledgers, self.outages.note
        )
        # bumped on every revocation: records fetched before one are not ours to start
        self._revocations = 0
        self._slot_freed = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.intake: LaneIntake | None = None
        self.producer: AIOKafkaProducer | None = None
        self.health = metrics.Health(f"runtime {self.runtime_id}", busy=lambda: bool(self.inflight))
        self.watch = RuntimeWatch(self)  # lag gauges, broker and assignment checks
        self.health.checks += [self.watch.broker_check, self.watch.assignment_check]
        self.health.degraded.append(self.outages.degraded)
        self.outages.on_change.append(self._outage_changed)
        self._server = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, drain_timeout: float = 30.0, metrics_port: int | None = None
    ) -> WorkerStats:
        try:
            return await self._run(stop, drain_timeout, metrics_port)
        finally:
            if self._server:
                await self._server.cleanup()

    async def _run(
        self, stop: asyncio.Event, drain_timeout: float, metrics_port: int | None
    ) -> WorkerStats:
        # a runtime that may not report its steps must not take tasks: fail now, in one line
        await authz.require(
            self.conf,
            read=topics.lane_topics(self.task_type),
            write=[topics.STEPS, topics.DLQ, topics.ARTIFACTS],
        )
        self.producer = await clients.start(
            clients.producer(self.conf, client_id=self.runtime_id), self.conf
        )
        try:
            self.admin = await clients.start(
                clients.admin(self.conf, client_id=self.runtime_id), self.conf
            )
        except BaseException:
            await clients.close(self.producer)
            raise
        self.consumer = clients.consumer(
            conf=self.conf,
            client_id=self.runtime_id,
            group_id=self.group_id,
            **self.consumer_options,
        )
        try:
            self.intake = LaneIntake(
                self.consumer, self.task_type, prefetch=self.concurrency, min_share=self.min_share
            )
            self.consumer.subscribe(self.intake.topics, listener=_Rebalance(self))
            await clients.start(self.consumer, self.conf)
            # /metrics and /health once the broker answered: an unreachable broker is one
            # error line, not a server started and stopped
            self._server = await metrics.serve(self.health, metrics_port)
            try:
                async with self.runtime:
                    log.info(
                        "runtime %s consuming %s as group %s, concurrency %d, lower lanes "
                        "get at least %g of the starts",
                        self.runtime_id,
                        ", ".join(self.intake.topics),
                        self.group_id,
                        self.concurrency,
                        self.min_share,
                    )
                    watcher = asyncio.create_task(self.watch.run(stop))
                    try:
                        await self._poll_loop(stop)
                        await self._drain(drain_timeout)
                    finally:
                        watcher.cancel()
            finally:
                self.outages.close()
                self.committer.cancel()
                await self.consumer.stop()
        finally:
            await self.admin.close()
            await self.producer.stop()
        log.info("runtime %s stopped: %s", self.runtime_id, self.stats)
        return self.stats

    def _free(self) -> int:
        busy = len(self.inflight) - len(self._acking)
        open_ = self.quarantine.is_open and not self.outages.paused
        return self.capacity() - busy if open_ else 0

    def _outage_changed(self) -> None:
        # `adp status` reads the pause from the commit metadata; a resume frees the slots
        self.committer.request(list(self.offsets))
        self._slot_freed.set()

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None and self.intake is not None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # Polling goes on at the limit too: it is what keeps this member in the group,
                # and lanes with room keep fetching, so urgent work is at hand when a slot frees.
                await self.intake.fill(wait_ms=self.poll_interval_ms if self._free() > 0 else 0)
                free = self._free()
                # aiokafka returns records only outside a reassignment, and a revocation drops
                # the intake's records of the revoked partitions, so what is taken here belongs
                # to the current assignment; `epoch` catches a revocation while starting them
                epoch = self._revocations
                taken = self.intake.take(max(free, 0))
                by_partition: dict[TopicPartition, list[ConsumerRecord]] = {}
                for record in taken:  # in pick order: the higher lane's partition first
                    by_partition.setdefault(
                        TopicPartition(record.topic, record.partition), []
                    ).append(record)
                # one commit (round trip) for every partition's batch, not one each
                await asyncio.gather(
                    *(self._start_batch(tp, records, epoch) for tp, records in by_partition.items())
                )
                if free <= 0 and not taken:
                    self._slot_freed.clear()
                    waiter = asyncio.ensure_future(self._slot_freed.wait())
                    await asyncio.wait(
                        {waiter, stopping},
                        timeout=self.poll_interval_ms / 1000,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    waiter.cancel()
        finally:
            stopping.cancel()

    def capacity(self) -> int:
        current = min(self.concurrency, self.limit.current) if self.limit else self.concurrency
        if current != self._capacity:
            log.info(
                "concurrency %s from %d to %d (LLM endpoint %s)",
                "lowered" if current < self._capacity else "raised",
                self._capacity,
                current,
                "throttling" if current < self._capacity else "recovering",
            )
            self._capacity = current
            metrics.CONCURRENCY_LIMIT.labels(self.task_type).set(current)
        return current

    async def _drain(self, timeout: float) -> None:
        """On shutdown let running tasks finish for a while, then cancel the rest (uncommitted:
        they will be redone); the last done offsets are committed before this returns."""
        if not self.inflight:
            await self.committer.settle()
            return
        log.info("waiting up to %.0fs for %d running task(s)", timeout, len(self.inflight))
        _, pending = await asyncio.wait(set(self.inflight), timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.committer.settle()
        if pending:  # cancelled on purpose, not killed: say nothing is running, so no strikes
            await self.committer.now(list(self.offsets), clean=True)

    # ---- one task --------------------------------------------------------------------------

    async def _start_batch(
        self, tp: TopicPartition, records: list[ConsumerRecord], epoch: int
    ) -> None:
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
        # owner of the partition finds it in the commit metadata (streams/runtime/poison.py).
        await self.committer.request([tp])
        if self._revocations != epoch:  # revoke() already dropped this partition's tracker
            log.info(
                "not starting %d task(s) of %s[%d]: the partition was revoked meanwhile",
                len(records),
                tp.topic,
                tp.partition,
            )
            return
        lane = topics.lane_of(tp.topic).name
        for record in records:
            self.stats.received += 1
            metrics.TASKS_RECEIVED.labels(self.task_type, lane).inc()
            metrics.TASK_WAIT.labels(self.task_type, lane).observe(
                max(0.0, time.time() - record.timestamp / 1000)
            )
            metrics.TASKS_IN_FLIGHT.labels(self.task_type).inc()
            task = asyncio.create_task(
                self._handle(tp, record), name=f"task@{tp.topic}-{tp.partition}:{record.offset}"
            )
            self.inflight[task] = (tp, record.offset)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.inflight.pop(task, None)
        self._acking.discard(task)
        metrics.TASKS_IN_FLIGHT.labels(self.task_type).dec()
        self._slot_freed.set()

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        task = task_from_record(record.value)  # Avro, or plain JSON from kcat & co.
        if isinstance(task, Task) and task.task_type != self.task_type:
            task = f"task_type {task.task_type!r} does not belong on {tp.topic}"
        if isinstance(task, str):
            await self._dead_letter(record, task)
            await self._done(tp, record.offset)
            return
        strikes = self.ledgers.get(tp, PoisonLedger()).of(record.offset)
        if strikes >= self.poison_limit:
            await self._dead_letter(
                record,
                f"poison: task {task.task_id} was running when its "
                f"runtime process died {strikes} times",
            )
            await self._done(tp, record.offset)
            return
        if strikes:
            log.warning(
                "task %s: its runtime died %d time(s) while running it; running it alone",
                task.task_id,
                strikes,
            )
        async with self.quarantine.slot(suspect=strikes > 0):
            # an outage abandons the attempt and runs the task again under a new one
            attempt, outcome = await self.outages.run(
                lambda: Attempt(self.producer, self.runtime_id, task, self.verify_context),
                self.runtime,
                self._agent_done,
            )
            self._count(outcome)
            log.info(
                "task %s: finished success=%s steps=%d%s%s",
                task.key,
                outcome.success,
                attempt.steps,
                f" ({outcome.error_type}: {outcome.error})" if outcome.error_type else "",
                f", verdict {attempt.verdict.status}" if attempt.verdict else "",
            )
        await self._done(tp, record.offset)

    def _agent_done(self) -> None:
        # the offset still counts as done only after the acks (then _done): only the slot frees
        self._acking.add(asyncio.current_task())
        self._slot_freed.set()

    def _count(self, outcome: Outcome) -> None:
        self.stats.finished += 1
        self.health.progress()
        error_type = str(getattr(outcome.error_type, "value", outcome.error_type or ""))
        metrics.TASKS_FINISHED.labels(
            self.task_type, "success" if outcome.success else "failure", error_type
        ).inc()
        if outcome.success:
            self.stats.succeeded += 1
        elif error_type:
            self.stats.by_error[error_type] = self.stats.by_error.get(error_type, 0) + 1

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        self.stats.dead_lettered += 1
        metrics.DLQ_MESSAGES.labels("runtime").inc()
        await self.producer.send_and_wait(
            topics.DLQ,
            record.value,
            key=record.key,
            headers=dlq_headers(reason, record.topic, record.partition, record.offset),
        )

    async def _done(self, tp: TopicPartition, offset: int) -> None:
        tracker = self.offsets.get(tp)
        if tracker is None:  # partition was revoked meanwhile; its new owner redoes the task
            return
        tracker.finish(offset)
        self.ledgers.get(tp, PoisonLedger()).clear(offset)
        # not awaited: the slot frees now; the commit joins the next round
        # (streams/runtime/commits.py)
        self.committer.request([tp])

    # ---- rebalance -------------------------------------------------------------------------

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        self._revocations += 1
        self.intake.drop(revoked)
        victims = [t for t, (tp, _) in self.inflight.items() if tp in revoked]
        for t in victims:
            t.cancel()
        if victims:
            await asyncio.gather(*victims, return_exceptions=True)
            self.stats.cancelled += len(victims)
            log.info(
                "cancelled %d running task(s) of revoked partitions; they will be redone",
                len(victims),
            )
        # commit what is safely done before the partitions move to another member
        await self.committer.now([tp for tp in revoked if tp in self.offsets], clean=True)
        for tp in revoked:
            self.offsets.pop(tp, None)
            self.ledgers.pop(tp, None)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Read each new partition's commit metadata: offsets that were running when the last
        owner stopped without a clean commit get a strike."""
        if not assigned:
            return
        committed = await self.admin.list_consumer_group_offsets(
            self.group_id, partitions=list(assigned)
        )
        for tp in assigned:
            meta = committed.get(tp)
            ledger = PoisonLedger.from_metadata(
                meta.metadata if meta else None, meta.offset if meta and meta.offset >= 0 else None
            )
            self.ledgers[tp] = ledger
            if ledger.strikes:
                log.warning(
                    "partition %s[%d]: tasks running when the previous owner died: %s",
                    tp.topic,
                    tp.partition,
                    ledger.strikes,
                )


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: RuntimeWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        await self.worker.assigned(set(assigned))
