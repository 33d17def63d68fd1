"""`adp synthesize kafka --follow`: the flywheel. Verified trajectories in, new tasks out.

A consumer group (adp-synthesizer by default) on adp.trajectories, scaled like the runtimes: any
number of members share its partitions. Each trajectory is a parent; several are synthesized at
once (--concurrency), and the accepted tasks go straight to the task topics through the same
publisher as `adp produce`, where the runtimes pick them up; their trajectories come back here as
the next generation's parents.

Nothing produced twice, no parent skipped:
- a parent's offset counts as done only after every task it produced is acknowledged by the
  broker (acks=all), and commits advance per partition over the contiguous prefix of done
  offsets only (streams/runtime/offsets.py), so a SIGKILL redoes at most the parents in flight;
- task ids are derived from parent, method and index, and the task topics are read before the
  first parent: a redone parent's tasks that already went out are recognised by id and not
  produced again (counted as resumed);
- a parent the budget, --max-tasks or an LLM outage interrupts is left uncommitted, for a later
  run (an outage pauses the parent and retries it with backoff; it never drops it).

It stops by itself and says why: --budget-usd spent (the spending rides along with each offset
commit as metadata, so the whole group and its restarts share one budget), --max-tasks produced
(counted from the task topics, restarts included), or --max-generations reached: generation G
exists and the factory is idle (idle.py: no task waiting or running, every step aggregated,
every trajectory read), or nothing more grows in it ("dried-up").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from adp.schemas import codec
from adp.schemas.contracts import Trajectory
from adp.streams.kafka import authz, clients, topics
from adp.streams.runtime.offsets import PartitionOffsets
from adp.streams.synthesis import accounting
from adp.streams.synthesis.accounting import BudgetReached, Report, spend_metadata
from adp.streams.synthesis.engine import ParentResult
from adp.streams.synthesis.idle import FactoryLag
from adp.streams.synthesis.model import TAB, ModelUnavailable
from adp.streams.synthesis.publish import publish
from adp.streams.synthesis.setup import Parts, Plan, assemble

log = logging.getLogger(__name__)

SYNTHESIZER_GROUP = "adp-synthesizer"
IDLE_CONFIRM = 1.0  # seconds the factory must stay idle before the flywheel stops on it
IDLE_EVERY = 1.0  # seconds between two idle checks
SPEND_EVERY = 10.0  # seconds between two reads of what the other members committed as spent
RETRY_CAP = 30.0  # seconds: the longest pause between two tries of a parent the LLM failed
UNDECODABLE = "not a trajectory"


@dataclass
class _Partition:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    committed_usd: float = 0.0  # the group's committed spending for it, when it was assigned
    ours_base: float = 0.0  # of that, what this member had spent (and committed) earlier
    live_usd: float = 0.0  # spent by this member on its parents since
    dirty: bool = False


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, flywheel: Flywheel) -> None:
        self.flywheel = flywheel

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.flywheel.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.flywheel.assigned(assigned)


class Flywheel:
    def __init__(
        self,
        plan: Plan,
        group: str = SYNTHESIZER_GROUP,
        aggregator_group: str = topics.AGGREGATOR_GROUP,
        drain_timeout: float = 30.0,
    ) -> None:
        self.plan, self.group, self.aggregator_group = plan, group, aggregator_group
        self.drain_timeout = drain_timeout
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.inflight: dict[asyncio.Task, tuple[TopicPartition, int]] = {}
        self.parts: Parts | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.lag: FactoryLag | None = None
        self.read_any = False
        self._idle_since: float | None = None
        self._idle_checked = 0.0
        self._spend_checked = 0.0
        # this member's spending inside what the group committed, per partition
        self._own_committed: dict[TopicPartition, float] = {}
        self._outage = False
        self._failure: BaseException | None = None

    @property
    def report(self) -> Report:
        return self.parts.report

    async def run(self, stop: asyncio.Event) -> Report:
        conf = clients.connection(self.plan.conf)
        task_topics = topics.family_topics("tasks")
        await authz.require(conf, read=[topics.TRAJECTORIES, *task_topics], write=task_topics)
        async with FactoryLag(conf, self.group, self.aggregator_group) as lag:
            self.lag = lag
            spent = sum((await lag.spent()).values())
            self.parts = await assemble(
                self.plan, kafka=True, send=True, follow_topics=True, before_usd=spent
            )
            try:
                await self._consume(conf, stop)
            finally:
                await self.parts.close()
        return self.report

    async def _consume(self, conf, stop: asyncio.Event) -> None:
        self.consumer = clients.consumer(
            conf=conf, client_id="adp-synthesize", group_id=self.group, enable_auto_commit=False
        )
        self.consumer.subscribe([topics.TRAJECTORIES], listener=_Rebalance(self))
        await clients.start(self.consumer, conf)
        log.info(
            "synthesizing from %s as group %s (%s), %d tasks known on the task topics",
            topics.TRAJECTORIES,
            self.group,
            self.plan.limits.describe(),
            len(self.parts.produced),
        )
        try:
            await self._loop(stop)
        finally:
            await self._drain()
            await self._commit()
            await clients.close(self.consumer)

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self._limit_reached():
            if self._failure is not None:
                raise self._failure
            await self._commit()
            free = self.plan.concurrency - len(self.inflight)
            owned = list(self.consumer.assignment())
            if free <= 0:
                self.consumer.pause(*owned)
            else:
                self.consumer.resume(*owned)
            batches = await self.consumer.getmany(timeout_ms=500, max_records=max(free, 1))
            for tp, records in batches.items():
                for record in records:
                    self._take(tp, record)
            await self._refresh_spend()
            if batches or self.inflight:
                self._idle_since = None
            elif await self._idle_stop():
                return

    def _limit_reached(self) -> bool:
        if self.report.spend.exhausted:
            self.report.stop(accounting.BUDGET, f"${self.report.spend.total_usd:.6f} spent")
        elif self.parts.allowance.reached:
            self.report.stop(
                accounting.MAX_TASKS, f"{len(self.parts.allowance.counted)} tasks produced"
            )
        return self.report.stop_reason is not None

    # ---- one parent ---------------------------------------------------------------------------
    def _take(self, tp: TopicPartition, record) -> None:
        state = self.partitions.get(tp)
        if state is None:  # revoked while fetched
            return
        state.offsets.start(record.offset)
        self.read_any = True
        self.report.parents_read += 1
        why = UNDECODABLE
        try:
            parent = codec.decode(record.value, expect=Trajectory) if record.value else None
            why = UNDECODABLE if parent is None else self.parts.synthesizer.skip_reason(parent)
        except codec.DecodeError:
            parent = None
        if why is not None:
            self.report.parents_skipped[why] += 1
            self._finish(tp, record.offset)
            return
        job = asyncio.create_task(self._parent(tp, record.offset, parent))
        self.inflight[job] = (tp, record.offset)
        job.add_done_callback(self._done)

    def _done(self, job: asyncio.Task) -> None:
        self.inflight.pop(job, None)
        if not job.cancelled() and job.exception() is not None:
            self._failure = self._failure or job.exception()  # the loop raises it

    async def _parent(self, tp: TopicPartition, offset: int, parent: Trajectory) -> None:
        tab: list[float] = []
        TAB.set(tab)  # this task's own context: the calls made for this parent
        try:
            result = await self._synthesize(parent)
            if result is None:
                return  # left uncommitted for a later run
            await self._deliver(result)
            if not result.cut:
                self._finish(tp, offset)
        finally:
            self._charge(tp, sum(tab))

    async def _synthesize(self, parent: Trajectory) -> ParentResult | None:
        pause = 1.0
        while self.report.stop_reason is None:
            try:
                result = await self.parts.synthesizer.synthesize(parent)
            except BudgetReached as exc:
                self.report.stop(accounting.BUDGET, str(exc))
                return None
            except ModelUnavailable as exc:
                if not self._outage:
                    log.warning("LLM unavailable, parents wait and are retried: %s", exc)
                self._outage = True
                await asyncio.sleep(pause)
                pause = min(RETRY_CAP, pause * 2)
                continue
            if self._outage:
                log.info("LLM answering again")
            self._outage = False
            return result
        return None

    async def _deliver(self, result: ParentResult) -> None:
        """Produce the accepted tasks and wait until the broker confirmed every one."""
        limit = self.parts.synthesizer.options.limit
        sent = await publish(self.parts.publisher, result.tasks, limit)  # not `+= await`: the
        self.report.produced += sent  # count would be read before, and lose concurrent adds
        self.parts.produced.update(t.task_id for t in result.tasks)

    def _finish(self, tp: TopicPartition, offset: int) -> None:
        state = self.partitions.get(tp)
        if state is not None:
            state.offsets.finish(offset)
            state.dirty = True

    def _charge(self, tp: TopicPartition, usd: float) -> None:
        state = self.partitions.get(tp)
        if state is not None and usd:
            state.live_usd += usd
            state.dirty = True

    # ---- commits and rebalances -------------------------------------------------------------
    async def _commit(self, only: list[TopicPartition] | None = None) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        ours: dict[TopicPartition, float] = {}  # our spending in what is sent
        for tp, state in self.partitions.items():
            committable = state.offsets.committable
            if (only is None or tp in only) and state.dirty and committable is not None:
                spent = state.committed_usd + state.live_usd
                offsets[tp] = OffsetAndMetadata(committable, spend_metadata(spent))
                ours[tp] = state.ours_base + state.live_usd
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # the next round carries the same offsets
            log.warning("offset commit failed: %s: %s", type(exc).__name__, exc)
            return
        for tp, sent in offsets.items():
            self._own_committed[tp] = ours[tp]
            state = self.partitions.get(tp)
            if state is None:
                continue
            # a parent that finished while the commit was on its way is for the next round
            now = OffsetAndMetadata(
                state.offsets.committable,
                spend_metadata(state.committed_usd + state.live_usd),
            )
            state.dirty = now != sent

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Parents of revoked partitions stop here, uncommitted; another member redoes them."""
        gone = set(revoked)
        jobs = [job for job, (tp, _) in self.inflight.items() if tp in gone]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        await self._commit(only=list(gone))
        for tp in gone:
            self.partitions.pop(tp, None)

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        spent = await self.lag.spent()
        for tp in assigned:
            if tp not in self.partitions:
                ours = self._own_committed.get(tp, 0.0)
                self.partitions[tp] = _Partition(committed_usd=spent.get(tp, 0.0), ours_base=ours)

    async def _refresh_spend(self) -> None:
        """What the other members spent, as they committed it (for the shared budget)."""
        now = time.monotonic()
        if self.plan.limits.budget_usd is None or now - self._spend_checked < SPEND_EVERY:
            return
        self._spend_checked = now
        committed = sum((await self.lag.spent()).values())
        # total = what the group committed, less our part of it, plus all we spent (Spend.usd)
        self.report.spend.before_usd = max(0.0, committed - sum(self._own_committed.values()))

    # ---- stopping -----------------------------------------------------------------------------
    async def _idle_stop(self) -> bool:
        """--max-generations: stop once the factory is idle and generation G exists (or
        nothing more grows after this run read something)."""
        limit = self.plan.limits.max_generations
        now = time.monotonic()
        if limit is None or now - self._idle_checked < IDLE_EVERY:
            return False
        self._idle_checked = now
        await self._commit()
        if not await self.lag.idle():
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < IDLE_CONFIRM:
            return False
        reached = self.parts.known.max_generation
        if reached >= limit:
            self.report.stop(
                accounting.MAX_GENERATIONS, f"generation {reached} reached, every task came back"
            )
        elif self.read_any:
            self.report.stop(
                accounting.DRIED_UP,
                f"nothing more grows after generation {reached}, every task came back",
            )
        return self.report.stop_reason is not None

    async def _drain(self) -> None:
        """Parents in flight may finish for a while (the budget and the limits stop them at
        their next step); the rest are cancelled, uncommitted."""
        if not self.inflight:
            return
        log.info("waiting up to %.0fs for %d parent(s)", self.drain_timeout, len(self.inflight))
        _, pending = await asyncio.wait(set(self.inflight), timeout=self.drain_timeout)
        for job in pending:
            job.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
