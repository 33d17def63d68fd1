"""Offset commits of a runtime, coalesced: at most one commit in flight per consumer.

A runtime at concurrency 64 finishes and starts tasks many times a second; a commit per task, each
waiting its turn for a broker round trip, made the commit path the runtime's ceiling (issue 13: ~20
LLM calls/s against an ideal of 320). Here every request made while a commit is in flight joins the
next one, which carries the newest state of every partition asked for, so the commit rate follows
the broker's round trip, not the task rate. What is committed is still decided by the worker at the
moment the commit is sent (streams/runtime/offsets.py: only the contiguous done prefix), so
coalescing never commits past an unfinished task.

A commit the group refuses because it rebalanced without this member (CommitFailedError: cut off
from Kafka for longer than the session timeout, or too slow to rejoin) is not an error of the
runtime: the partitions may belong to another member now, which redoes from the committed offset
whatever was not committed here, and aiokafka rejoins the group (revoking, then assigning).
It is logged, once until a commit succeeds again, and the runtime carries on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from adp.streams.runtime.offsets import PartitionOffsets
from adp.streams.runtime.poison import PoisonLedger

log = logging.getLogger(__name__)


def _retrieve(fut: asyncio.Future) -> None:
    # a round nobody awaits (a finished task asks and moves on) must not log "never retrieved";
    # the failure is logged once by the flusher, and the next round carries the same offsets
    if not fut.cancelled():
        fut.exception()


class RuntimeCommits:
    """The commits of one runtime consumer over the worker's per-partition trackers and poison
    ledgers (shared dicts: the worker starts, finishes and forgets offsets in them).

    `request(partitions)` returns a future that resolves once a commit sent after the request
    (so covering the state at request time, or newer) has completed, or fails with its error;
    `now(partitions, clean)` commits at once (rebalance, shutdown)."""

    def __init__(
        self,
        consumer: Callable[[], AIOKafkaConsumer | None],
        offsets: dict[TopicPartition, PartitionOffsets],
        ledgers: dict[TopicPartition, PoisonLedger],
        paused: Callable[[], dict | None] = lambda: None,
    ):
        self._consumer, self.offsets, self.ledgers = consumer, offsets, ledgers
        self.paused = paused  # the outage note every commit carries while paused
        self._lock = asyncio.Lock()
        self._dirty: set[TopicPartition] = set()
        self._next: asyncio.Future | None = None
        self._flusher: asyncio.Task | None = None
        self._refused = False  # the group refused the last commit (rebalanced without us)

    def request(self, partitions: Iterable[TopicPartition]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self._dirty.update(partitions)
        if not self._dirty:
            done = loop.create_future()
            done.set_result(None)
            return done
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieve)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="offset-commits")
        return self._next

    async def _flush(self) -> None:
        while self._dirty:
            partitions, self._dirty = sorted(self._dirty), set()
            round_, self._next = self._next, None
            try:
                await self.now(partitions)
            except asyncio.CancelledError:
                round_.cancel()
                raise
            except Exception as exc:
                log.warning(
                    "offset commit failed (the next commit carries the same offsets): %s: %s",
                    type(exc).__name__,
                    exc,
                )
                round_.set_exception(exc)
            else:
                round_.set_result(None)

    async def now(self, partitions: list[TopicPartition], clean: bool = False) -> None:
        """Commit each partition's contiguous done prefix, with the running offsets and strikes as
        metadata (streams/runtime/poison.py). `clean`: report nothing running (tasks were cancelled
        on purpose)."""
        async with self._lock:
            consumer = self._consumer()
            owned = {}
            for tp in partitions:
                tracker = self.offsets.get(tp)
                if (
                    tp not in consumer.assignment()
                    or tracker is None
                    or tracker.committable is None
                ):
                    continue
                ledger = self.ledgers.setdefault(tp, PoisonLedger())
                running = set() if clean else tracker.running_offsets
                owned[tp] = OffsetAndMetadata(
                    tracker.committable,
                    ledger.metadata(running, tracker.committable, self.paused()),
                )
            if owned:
                try:
                    await consumer.commit(owned)
                except CommitFailedError:
                    self._log_refusal(len(owned))
                    return
                self._refused = False

    def _log_refusal(self, partitions: int) -> None:
        if self._refused:
            log.debug("offset commit refused again: the group rebalanced without this member")
            return
        self._refused = True
        log.warning(
            "offset commit of %d partition(s) refused: the group rebalanced without this member "
            "(cut off from Kafka for longer than the session timeout?); rejoining, and whoever "
            "owns those partitions now redoes their uncommitted tasks",
            partitions,
        )

    async def settle(self) -> None:
        """Wait until every requested commit has been sent and answered (errors were logged)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    def cancel(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._next is not None and not self._next.done():
            self._next.cancel()
