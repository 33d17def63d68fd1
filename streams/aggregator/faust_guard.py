"""Where the aggregator works around faust-streaming 0.15.3, and only here.

1. Records Faust skips (faust-streaming #216, #221; the fix in #223 is what drops them now).
   Faust's stream iterator drops an event whose message was fetched before a rebalance (its
   generation id is stale) or while flow control is suspended (start-up recovery), and ACKS it
   as it drops it (streams.py `_c_aiter`: `it.after(event, do_ack or value is skipped_value)`).
   If the consumer's position has already moved past the batch it came from, nobody fetches it
   again and its offset gets committed: the event is lost for the agent (seen here with Kafka
   4.1.1 in about a third of restarts).
   https://github.com/faust-streaming/faust/issues/221

   adp.steps has no compaction and no transactions, so its offsets are contiguous. SkipGuard
   tracks the next offset it expects per partition (after an assignment: the group's committed
   offset, asked of the broker) and, when a record arrives beyond it, reads the hole itself
   (adp.streams.kafka.reader.read_partition) so the caller feeds those records first, in order.
   Events Faust delivers again later are duplicates, which the assembler drops. A hole at the
   very end of a partition is never followed by a record that reveals it, so a timer
   (`refetch_stalled`) seeks the consumer back on partitions whose end lies beyond what the
   agent has seen and that delivered nothing for a while.

2. A crashed agent leaves a live process. When an exception escapes an agent, Faust marks the
   actor dead and wakes its supervisor, which does not restart a stream agent in a usable state;
   the worker keeps running with nothing consuming, forever (a test waited 10 minutes).
   https://github.com/robinhood/faust/issues/604 (same supervisor path, acks lost on restart)
   Nor may the worker stop cleanly then: `Stream.take_events` acks the events of the batch it
   handed out in a `finally`, however the batch ended, so a clean stop commits the batch the
   agent crashed on although its trajectories were never written (seen: the crashed batch's
   offsets committed, its trajectory in no sink). `exit_on_crash` wraps each agent function: it
   logs the error and ends the process at once with AGENT_CRASH_EXIT, as a kill -9 would, which
   the aggregator is built to survive: a supervisor (systemd, compose, Kubernetes) restarts it,
   and it resumes from the changelog and the committed offsets, the crashed batch included.
   An outage of the sink is not a crash: the writer waits it out (sink_outage.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from adp.core.errors import EXIT_CRASHED
from adp.streams.kafka.admin import admin_client
from adp.streams.kafka.clients import Conn, KafkaClientError
from adp.streams.kafka.reader import read_partition

log = logging.getLogger(__name__)
T = TypeVar("T")
AgentFun = Callable[[Any], Awaitable[None]]

STALL_CHECK_EVERY = 5.0  # seconds between checks for partitions Faust stopped delivering
STALL_AFTER = 10.0  # a partition with records pending and none delivered for this long
AGENT_CRASH_EXIT = EXIT_CRASHED  # a worker stopped because an agent crashed (adp.core.errors)


async def committed_offset(conf: Conn, group: str, topic: str, partition: int) -> int:
    """The group's committed offset of a partition; 0 where it has none."""
    tp = TopicPartition(topic, partition)
    async with admin_client(conf) as admin:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    found = offsets.get(tp)
    return max(found.offset, 0) if found is not None else 0


async def until_broker_answers(
    call: Callable[..., Awaitable[T]], *args: Any, pause: float = 1.0
) -> T:
    """Await `call(*args)` until the broker answers: a hole must be read, not skipped, so the
    agent waits out a broker outage here."""
    while True:
        try:
            return await call(*args)
        except (TimeoutError, KafkaError, KafkaClientError, OSError) as exc:
            log.warning("waiting for the broker (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(pause)


class SkipGuard:
    """Finds the records Faust skipped on one topic (see the module docstring, point 1)."""

    def __init__(self, conf: Conn, group: str, topic: str) -> None:
        self.conf, self.group, self.topic = conf, group, topic
        self.recovered = 0  # records read back from holes
        self.refetches = 0  # seeks of stalled partitions
        self._next: dict[int, int] = {}  # partition -> next expected offset
        self._last_seen: dict[int, float] = {}  # partition -> monotonic time of last delivery
        self._busy_since: float | None = None  # the agent is working on a batch since then
        self._idle_since = time.monotonic()  # ... or waiting for Faust's next one since then

    def batch_started(self) -> None:
        self._busy_since = time.monotonic()

    def batch_done(self) -> None:
        self._busy_since = None
        self._idle_since = time.monotonic()

    def forget(self) -> None:
        """After a rebalance Faust seeks back to the committed offsets: expect those."""
        self._next.clear()
        self._last_seen.clear()

    async def missed_before(self, message: Any) -> list[Any]:
        """The records of the message's partition that Faust skipped before it (usually none),
        in offset order. Call it for every delivered message, in delivery order."""
        partition, offset = message.partition, message.offset
        expected = self._next.get(partition)
        if expected is None:
            # first record of this partition since the (re)assignment: it must be the group's
            # committed offset (asked of the broker: Faust's own map may not be filled yet)
            expected = await until_broker_answers(
                committed_offset, self.conf, self.group, self.topic, partition
            )
        missed: list[Any] = []
        if offset > expected:
            missed = await until_broker_answers(
                read_partition, self.conf, self.topic, partition, expected, offset
            )
            if missed:
                log.warning(
                    "%s[%d]: the consumer skipped %d records in offsets %d..%d; feeding them first",
                    self.topic,
                    partition,
                    len(missed),
                    expected,
                    offset - 1,
                )
                self.recovered += len(missed)
        self._next[partition] = max(offset + 1, self._next.get(partition, 0))
        self._last_seen[partition] = time.monotonic()
        return missed

    async def refetch_stalled(self, consumer: Any) -> None:
        """Timer body: seek back partitions whose tail Faust skipped. Never raises (a broker
        outage must not crash the app; the next round retries)."""
        try:
            await self._seek_stalled(consumer)
        except Exception as exc:
            log.warning(
                "stall check failed (%s: %s); retrying in %.0fs",
                type(exc).__name__,
                exc,
                STALL_CHECK_EVERY,
            )

    async def _seek_stalled(self, consumer: Any) -> None:
        # Only Faust's silence counts: while the agent works on a batch (or has just finished
        # one) nothing is delivered either, and seeking back then only re-reads records.
        if self._busy_since is not None:
            return
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            waited = now - max(self._last_seen.get(tp.partition, now), self._idle_since)
            if tp.topic != self.topic or waited < STALL_AFTER:
                self._last_seen.setdefault(tp.partition, now)
                continue
            end = consumer.highwater(tp)
            expected = self._next.get(tp.partition)
            if expected is None:
                expected = await committed_offset(self.conf, self.group, tp.topic, tp.partition)
            if end is not None and end > expected:
                log.warning(
                    "%s[%d]: %d records up to offset %d not delivered for %.0fs; "
                    "fetching again from %d",
                    tp.topic,
                    tp.partition,
                    end - expected,
                    end - 1,
                    waited,
                    expected,
                )
                self.refetches += 1
                self._last_seen[tp.partition] = now
                await consumer.seek(tp, expected)


def exit_on_crash(fun: AgentFun) -> AgentFun:
    """Decorate an agent function (point 2): an exception escaping it is logged and ends the
    process at once with AGENT_CRASH_EXIT, before anything acknowledges the batch."""

    @functools.wraps(fun)
    async def agent(stream: Any) -> None:
        try:
            await fun(stream)
        except Exception as exc:
            name = getattr(fun, "__name__", "agent").strip("_").removesuffix("_agent")
            log.error(
                "agent %s crashed: %s: %s; stopping the aggregator now (exit status %d, its "
                "batch unacknowledged) so a supervisor restarts it from its changelog and "
                "committed offsets",
                name,
                type(exc).__name__,
                exc,
                AGENT_CRASH_EXIT,
                exc_info=exc,
            )
            logging.shutdown()  # flush every handler: nothing runs after os._exit
            os._exit(AGENT_CRASH_EXIT)

    return agent
