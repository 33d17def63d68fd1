"""What becomes of a runtime's running tasks when partitions change hands: a rebalance cancels
only those whose partition moved to another member; a member that stops drains first.

Kafka's classic group protocol, the one aiokafka 0.14 speaks (it has no incremental cooperative
rebalancing), is eager: when any member joins or leaves, every member gives up every partition
and learns its new ones only once all have rejoined. Cancelling at that moment, the plain
consumer pattern, throws away the whole group's running work on every scale step. Here a
rebalance has two phases, and the partitions in between are *held* (streams/runtime/progress.py):

1. revoked (every partition): hold. No task starts until phase 2 is over; fetched, unstarted
   records are dropped (fetched again later); the done prefix of every partition is committed
   with nothing marked running (so if a partition moves, its next owner counts no poison strikes
   for tasks cancelled on purpose); the running tasks go on, and nothing more is committed for
   a held partition -- this member may have lost it already. (So a process that dies during
   the seconds of a rebalance gives the tasks it was running no poison strike.)
2. assigned: settle. A held partition assigned again, whose hold commit went through (so no
   other member can have owned it in between), is kept: its tasks never notice; fetching
   resumes past what was started here, and the next commit puts the running offsets back into
   the metadata. Every other held partition is lost: its tasks are cancelled without a finished
   event and its next owner redoes them from the commit. New partitions' poison strikes are read
   from their commit metadata before any of their tasks starts.

The assignor (streams/runtime/assignor.py) keeps partitions where they were as far as an even
spread of every lane allows, and gives up the least busy ones first, so few tasks are cancelled.

A task that finishes while its partition is held sends its finished event, and nothing commits
its offset unless the partition is kept. If the partition moved, its new owner runs the task
again and a second attempt completes; the aggregator keeps the first complete attempt in adp.steps
order (streams/aggregator/assembly.py), which is the held one (its finished event was on the
broker before the new owner even got the partition), and replay reads the same order: one
trajectory either way, the second attempt only costs its work.

A member told to stop (SIGTERM) takes no new task and gives its running ones the drain timeout
to finish, polling meanwhile with every partition paused so it stays in the group (and a
rebalance during the drain is handled as above); what still runs then is cancelled and handed
back uncommitted, with a last commit that marks nothing running (no poison strikes), and leaving
the group hands its partitions to the others.

`keep_running=False` is the plain eager behaviour (every revocation cancels every task), kept to
measure the difference (bench/parts/o_rebalance.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from adp.core import metrics
from adp.streams.runtime.commits import RuntimeCommits
from adp.streams.runtime.handler import WorkerStats
from adp.streams.runtime.intake import LaneIntake
from adp.streams.runtime.progress import PartitionProgress
from adp.streams.runtime.slots import RunningTasks

log = logging.getLogger(__name__)


class Member(Protocol):
    """What a rebalance asks of the runtime worker (streams/runtime/worker.py)."""

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Cancel the partitions' running tasks, commit what this member still may, forget
        them."""

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Get new partitions ready (their poison strikes)."""


class Rebalance(ConsumerRebalanceListener):
    def __init__(
        self,
        member: Member,
        progress: PartitionProgress,
        tasks: RunningTasks,
        committer: RuntimeCommits,
        stats: WorkerStats,
        keep_running: bool = True,
    ) -> None:
        self.member, self.progress, self.tasks = member, progress, tasks
        self.committer, self.stats, self.keep_running = committer, stats, keep_running
        self.consumer: AIOKafkaConsumer | None = None
        self.intake: LaneIntake | None = None
        # from a revocation until the new partitions are ready: no task may start
        self.settling = False
        self.failure: BaseException | None = None

    def attach(self, consumer: AIOKafkaConsumer, intake: LaneIntake) -> None:
        self.consumer, self.intake = consumer, intake

    def check(self) -> None:
        """Raise what broke a rebalance. aiokafka logs an exception of the listener and goes
        on; a Kafka error is worth no more (the next commit or rebalance tries again), but any
        other one left this member's view of its partitions in doubt: the worker stops."""
        if self.failure is not None:
            raise RuntimeError("a rebalance failed; stopping this runtime") from self.failure

    async def on_partitions_revoked(self, revoked) -> None:
        self.settling = True
        with self._failing():
            if self.keep_running:
                await self.hold(set(revoked))
            else:
                await self.member.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        assigned = set(assigned)
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        try:
            with self._failing():
                kept = await self.settle(assigned) if self.keep_running else set()
                await self.member.assigned(assigned - kept)
        finally:
            self.settling = False

    @contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except (KafkaError, OSError, TimeoutError):  # the broker: logged by aiokafka, retried
            raise
        except Exception as exc:
            self.failure = self.failure or exc
            raise

    async def hold(self, partitions: set[TopicPartition]) -> None:
        """A rebalance begins: commit what is done, keep the running tasks going."""
        held = self.progress.hold(partitions)
        self.intake.drop(partitions)
        try:
            committed = await self.committer.now(held, clean=True, holding=True)
        except Exception as exc:  # the broker is gone, or would not say
            log.warning("the commit before the rebalance failed: %s: %s", type(exc).__name__, exc)
            committed = False
        if committed:
            self.progress.confirm_hold()
        elif held:  # the member may have been out of the group: nothing held can be trusted
            log.warning(
                "the tasks of the %d held partition(s) will be cancelled and redone: the commit "
                "before the rebalance did not go through",
                len(held),
            )
        if held:
            log.info(
                "rebalance: %d running task(s) of %d partition(s) go on until the new "
                "assignment says whose they are",
                len(self.tasks.on(held)),
                len(held),
            )

    async def settle(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """The new assignment is known: keep the held partitions that stayed, give up the
        others. Returns the kept ones."""
        kept, lost = self.progress.settle(assigned)
        for tp in kept:  # before anything is awaited: nothing may be fetched from the commit
            self.consumer.seek(tp, self.progress.resume_at(tp))
        self.intake.drop(kept)
        await self.member.revoke(lost)
        if kept:  # the running offsets go back into the commit metadata
            self.committer.request(kept)
            staying = len(self.tasks.on(kept))
            self.stats.kept_running += staying
            log.info(
                "rebalance: kept %d partition(s) and their %d running task(s)", len(kept), staying
            )
        return kept

    # ---- leaving the group ----------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """On stop: no new task starts; running tasks get `timeout` seconds to finish while
        the consumer keeps polling with every partition paused (the member stays in its group,
        a rebalance meanwhile still keeps or hands over work); the rest are cancelled and
        handed back uncommitted (the partitions' next owner redoes them), with a last commit
        that marks nothing running, so nobody counts them as poison."""
        running, began = len(self.tasks), time.monotonic()
        if running:
            log.info("draining: no new task, up to %.0fs for %d running one(s)", timeout, running)
        handed_back = await self.tasks.finish(timeout, poll=self._poll_paused)
        self.stats.handed_back += handed_back
        metrics.TASKS_CANCELLED.labels(self.tasks.task_type, "drain").inc(handed_back)
        await self.committer.settle()
        if handed_back:
            await self.committer.now(self.progress.tracked(), clean=True)
        log.info(
            "drained in %.1fs: %d running task(s) finished, %d handed back to the group "
            "(cancelled, uncommitted: another member redoes them), %d fetched and not started "
            "left to it",
            time.monotonic() - began,
            running - handed_back,
            handed_back,
            self.intake.at_hand(),
        )

    async def _poll_paused(self, seconds: float) -> None:
        # records of a partition assigned during the drain may still come: never started,
        # never committed, so its owner after this member fetches them again
        self.consumer.pause(*self.consumer.assignment())
        await self.consumer.getmany(timeout_ms=int(seconds * 1000))
