"""The runtime consumer loop: tasks in from the priority lanes of adp.tasks.<type>, step events
out to adp.steps. It decides when tasks start and when their offsets count as done, and delegates
the rest: which fetched task a free slot starts (intake.py, lanes.py), what becomes of a started
task (handler.py), the running tasks and their slots (slots.py), what each partition has started,
finished and may commit (progress.py, offsets.py, commits.py), rebalances (rebalance.py,
assignor.py) and poison tasks (poison.py).

Delivery discipline (docs/architecture.md, "Delivery guarantees"):
- a plain aiokafka consumer in group adp-runtime-<type>, auto-commit off, subscribed to every
  lane topic of the type;
- up to `concurrency` tasks run at once; a lane's partitions are paused while it has enough
  fetched and unstarted to fill every slot, and the loop keeps polling, at the limit too, so
  the consumer never exceeds max.poll.interval.ms however long a task runs;
- a task's offset counts as done only after its finished event is acknowledged by the broker
  (acks=all), and commits advance per partition over the contiguous prefix of done offsets;
- on rebalance, only the tasks of partitions that moved to another member are cancelled,
  without a finished event (the new owner redoes them under a new attempt_id), and nothing is
  committed past them;
- on stop, no task starts; running ones get the drain timeout to finish, the rest are handed
  back uncommitted;
- a task that keeps killing its process is quarantined, then dead-lettered;
- a dependency's outage (LLM endpoint, sandbox, browser) pauses the process instead of failing
  its tasks: no task starts while it lasts, and the tasks that met it run again once it is over
  (breaker.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.structs import ConsumerRecord

from adp.core import metrics
from adp.core.limit import AdaptiveLimit
from adp.runtimes.base import Runtime
from adp.runtimes.verify import VerifyContext
from adp.streams.kafka import authz, clients, topics
from adp.streams.runtime.assignor import LaneStickyAssignor
from adp.streams.runtime.breaker import OutageBreaker
from adp.streams.runtime.commits import RuntimeCommits
from adp.streams.runtime.handler import TaskHandler, WorkerStats
from adp.streams.runtime.intake import LaneIntake
from adp.streams.runtime.lanes import DEFAULT_MIN_SHARE, check_min_share
from adp.streams.runtime.poison import read_ledgers
from adp.streams.runtime.progress import PartitionProgress
from adp.streams.runtime.rebalance import Rebalance
from adp.streams.runtime.slots import RunningTasks
from adp.streams.runtime.watch import RuntimeWatch

log = logging.getLogger(__name__)


def default_runtime_id(task_type: str) -> str:
    """<type>-<host>-<pid>-<random>: host and pid say where to look for a runtime's logs, the
    random part keeps ids unique where neither is, as in replicas of one container image on
    one host network (same hostname, same pid in every container)."""
    return f"{task_type}-{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def by_partition(records: list[ConsumerRecord]) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Records per partition, partitions in the order of their first record."""
    out: dict[TopicPartition, list[ConsumerRecord]] = {}
    for record in records:
        out.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return out


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
        keep_running_on_rebalance: bool = True,
        instance_id: str | None = None,
        outages: OutageBreaker | None = None,
    ):
        """`keep_running_on_rebalance` False: every rebalance cancels every running task (the
        plain eager consumer). `instance_id`: static membership (group.instance.id)."""
        self.runtime, self.task_type = runtime, task_type
        self.conf, self.concurrency = clients.connection(conf), max(1, concurrency)
        self.runtime_id = runtime_id or default_runtime_id(task_type)
        self.group_id = group_id or topics.runtime_group(task_type)
        self.poll_interval_ms = poll_interval_ms
        # each lower priority lane with work gets at least this share of task starts
        self.min_share = check_min_share(min_share, len(topics.LANES))
        self.limit = limit  # lowered by the LLM client on 429s (AIMD): a throttled endpoint
        # slows intake, since the worker takes new tasks only below it
        self._capacity = self.concurrency
        # extra AIOKafkaConsumer settings (e.g. max_poll_interval_ms, session_timeout_ms,
        # heartbeat_interval_ms); they override the defaults of clients.consumer
        static = {"group_instance_id": instance_id} if instance_id else {}
        self.consumer_options = {**static, **(consumer_options or {})}
        self.stats = WorkerStats()
        self.health = metrics.Health(f"runtime {self.runtime_id}", busy=lambda: bool(self.tasks))
        # a dependency's outage pauses the runtime (streams/runtime/breaker.py)
        self.outages = outages or OutageBreaker.from_settings(task_type, self.runtime_id)
        # what becomes of one started record; verifiers of tasks that name one use the
        # context's LLM chain and sandbox (made when first used)
        self.handler = TaskHandler(
            runtime,
            task_type,
            self.runtime_id,
            verify_context or VerifyContext(),
            poison_limit,
            self.stats,
            self.health,
            self.outages,
        )
        self._init_state(keep_running_on_rebalance)

    def _init_state(self, keep_running_on_rebalance: bool) -> None:
        # started, finished and committable offsets and poison strikes of each owned partition
        self.progress = PartitionProgress()
        self.tasks = RunningTasks(self.task_type)
        self.inflight, self._acking = self.tasks.inflight, self.tasks.acking
        # one commit in flight at a time; what is asked meanwhile rides on the next one
        self.committer = RuntimeCommits(lambda: self.consumer, self.progress, self.outages.note)
        # what a rebalance does to running work: holds it, keeps what stays, cancels what moved
        self.rebalance = Rebalance(
            self, self.progress, self.tasks, self.committer, self.stats, keep_running_on_rebalance
        )
        # The poll loop starts tasks only while every gate says yes (it keeps polling either
        # way, so the member stays in its group); a gate that opens may call `wake`.
        self.start_gates: list[Callable[[], bool]] = [
            lambda: self.handler.quarantine.is_open,  # a suspect task runs alone
            lambda: not self.rebalance.settling,  # no start before the assignment is settled
            lambda: not self.outages.paused,  # a dependency is down: its tasks wait, uncommitted
        ]
        self.consumer: AIOKafkaConsumer | None = None
        self.intake: LaneIntake | None = None
        self.producer: AIOKafkaProducer | None = None
        # lag gauges, broker and assignment checks
        self.watch = RuntimeWatch(self.task_type, self.health, self._assignment, self._lag)
        self.health.checks += [self.watch.broker_check, self.watch.assignment_check]
        self.health.degraded.append(self.outages.degraded)
        self.outages.on_change.append(self._outage_changed)
        # called once connected and the runtime is up: what a start-up line reports comes after
        # the start-up errors, which stay one line each
        self.on_started: list[Callable[[], None]] = []
        self._server = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, drain_timeout: float = 30.0, metrics_port: int | None = None
    ) -> WorkerStats:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._stop_server)  # last: /health answers to the end
            await self._connect(stack, metrics_port)
            await stack.enter_async_context(self.runtime)
            log.info(
                "runtime %s consuming %s as group %s, concurrency %d, lower lanes "
                "get at least %g of the starts",
                self.runtime_id,
                ", ".join(self.intake.topics),
                self.group_id,
                self.concurrency,
                self.min_share,
            )
            for started in self.on_started:
                started()
            watcher = asyncio.create_task(self.watch.run(stop))
            stack.callback(watcher.cancel)
            await self._poll_loop(stop)
            await self.rebalance.drain(drain_timeout)
        log.info("runtime %s stopped: %s", self.runtime_id, self.stats)
        return self.stats

    async def _connect(self, stack: AsyncExitStack, metrics_port: int | None) -> None:
        """Start the clients (each one closed by `stack`), join the group, serve /metrics."""
        # a runtime that may not report its steps must not take tasks: fail now, in one line
        await authz.require(
            self.conf,
            read=topics.lane_topics(self.task_type),
            write=[topics.STEPS, topics.DLQ, topics.ARTIFACTS],
        )
        self.producer = await clients.start(
            clients.producer(self.conf, client_id=self.runtime_id), self.conf
        )
        stack.push_async_callback(self.producer.stop)
        self.handler.producer = self.producer
        self.admin = await clients.start(
            clients.admin(self.conf, client_id=self.runtime_id), self.conf
        )
        stack.push_async_callback(self.admin.close)
        self.consumer = clients.consumer(
            conf=self.conf,
            client_id=self.runtime_id,
            group_id=self.group_id,
            partition_assignment_strategy=self._assignors(),
            **self.consumer_options,
        )
        stack.push_async_callback(self.consumer.stop)
        stack.callback(self.committer.cancel)
        stack.callback(self.outages.close)
        self.intake = LaneIntake(
            self.consumer, self.task_type, prefetch=self.concurrency, min_share=self.min_share
        )
        self.rebalance.attach(self.consumer, self.intake)
        await clients.start(self.consumer, self.conf)
        # subscribed once started: start() would otherwise wait for the first assignment, and
        # joining a busy group (its members finish or hand back running tasks first) may take
        # longer than the broker takes to answer; the poll loop waits for it instead
        self.consumer.subscribe(self.intake.topics, listener=self.rebalance)
        # /metrics and /health once the broker answered: an unreachable broker is one
        # error line, not a server started and stopped
        self._server = await metrics.serve(self.health, metrics_port)

    def _assignors(self) -> tuple:
        if not self.rebalance.keep_running:
            return (RoundRobinPartitionAssignor,)
        # the busiest partitions first in this member's claims: the ones it gives up, when it
        # must give some up, run the fewest tasks (streams/runtime/assignor.py)
        return (LaneStickyAssignor(rank=self.progress.busiest_first), RoundRobinPartitionAssignor)

    async def _stop_server(self) -> None:
        if self._server:
            await self._server.cleanup()

    def _assignment(self) -> set[TopicPartition]:
        return self.consumer.assignment() if self.consumer else set()

    async def _lag(self) -> dict[str, int]:
        return await self.intake.lag(self.progress.committable())

    # ---- taking work -----------------------------------------------------------------------

    def _free(self) -> int:
        free = self.capacity() - self.tasks.busy()  # also keeps the concurrency gauge current
        return free if all(gate() for gate in self.start_gates) else 0

    def wake(self) -> None:
        """Have the poll loop look for work now (e.g. a start gate opened)."""
        self.tasks.freed.set()

    def _outage_changed(self) -> None:
        # `adp status` reads the pause from the commit metadata; a resume frees the slots
        self.committer.request(self.progress.tracked())
        self.wake()

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None and self.intake is not None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self.rebalance.check()
                # Polling goes on at the limit too: it is what keeps this member in the group,
                # and lanes with room keep fetching, so urgent work is at hand when a slot frees.
                await self.intake.fill(wait_ms=self.poll_interval_ms if self._free() > 0 else 0)
                free = self._free()
                taken = await self._start_taken(free)
                if free <= 0 and not taken:
                    await self.tasks.wait_for_slot(self.poll_interval_ms / 1000, stopping)
        finally:
            stopping.cancel()

    async def _start_taken(self, free: int) -> list[ConsumerRecord]:
        """Start up to `free` of the fetched tasks (the intake's picks); returns those taken."""
        # aiokafka returns records only outside a reassignment, and a revocation drops the
        # intake's records of the revoked partitions, so what is taken here belongs to the
        # current assignment; `epoch` catches a revocation while starting them
        epoch = self.progress.epoch
        taken = self.intake.take(max(free, 0))
        # one commit (round trip) for every partition's batch, not one each
        await asyncio.gather(
            *(self._start_batch(tp, batch, epoch) for tp, batch in by_partition(taken).items())
        )
        return taken

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

    # ---- one task --------------------------------------------------------------------------

    async def _start_batch(
        self, tp: TopicPartition, records: list[ConsumerRecord], epoch: int
    ) -> None:
        # A rebalance can run (in aiokafka's coordinator task) after getmany() returned these
        # records, or while the commit below is awaited: then they may belong to another member
        # by now, which fetches them again from the committed offset. Starting them here too
        # would run the task twice; if the partition stays, they are fetched again here.
        if self.progress.epoch != epoch:
            return
        offsets = [record.offset for record in records]
        self.progress.start(tp, offsets)
        # Record what is about to run before it runs: if it kills this process, the next
        # owner of the partition finds it in the commit metadata (streams/runtime/poison.py).
        await self.committer.request([tp])
        if self.progress.epoch != epoch:
            self.progress.abandon(tp, offsets)
            log.info(
                "not starting %d task(s) of %s[%d]: a rebalance began meanwhile",
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
            self.tasks.start(tp, record.offset, self._handle(tp, record))

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        strikes = self.progress.strikes(tp, record.offset)
        await self.handler.handle(tp, record, strikes, on_agent_done=self.tasks.agent_done)
        if self.progress.finish(tp, record.offset):
            # not awaited: the slot frees now; the commit joins the next round
            # (streams/runtime/commits.py)
            self.committer.request([tp])
        # else the partition was revoked meanwhile; its new owner redoes the task

    # ---- rebalance hooks (streams/runtime/rebalance.py) -------------------------------------

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Give these partitions up: cancel their running tasks (another member redoes them),
        commit what is done where this member still may, forget them."""
        self.progress.revoke()
        self.intake.drop(revoked)
        cancelled = await self.tasks.cancel(self.tasks.on(revoked))
        if cancelled:
            self.stats.cancelled += cancelled
            metrics.TASKS_CANCELLED.labels(self.task_type, "moved").inc(cancelled)
            log.info(
                "cancelled %d running task(s) of partitions given up; they will be redone",
                cancelled,
            )
        # before the partitions move (eager revocation): commit what is safely done
        tracked = set(self.progress.tracked())
        await self.committer.now([tp for tp in revoked if tp in tracked], clean=True)
        self.progress.release(revoked)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Read each new partition's commit metadata: offsets that were running when the last
        owner stopped without a clean commit get a strike."""
        if not assigned:
            return
        for tp, ledger in (await read_ledgers(self.admin, self.group_id, assigned)).items():
            self.progress.inherit(tp, ledger)
