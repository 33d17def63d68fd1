"""A runtime's intake: task records fetched from its type's priority lanes and not started yet.

The worker (streams/runtime/worker.py) subscribes its one consumer to every lane topic of its type
(topics.lane_topics, highest first). Kafka hands out records in partition order, not priority
order, so the worker does not start what a poll returns: records go into one buffer per lane,
and each free slot starts the record that streams/runtime/lanes.py picks (higher lanes first, with a
minimum share for lower ones).

Flow control, so polling never stops and memory stays bounded:
- a lane's partitions are paused while its buffer holds `prefetch` records (enough to fill
  every slot), and resumed below that. Lanes with room keep fetching even while every slot is
  busy, so an urgent task produced behind a full runtime is at hand when the next slot frees;
- every call of `fill` polls the consumer (timeout 0 unless asked to wait), which is what keeps
  the member in its group however long tasks run (max.poll.interval.ms).

Buffered records are not started, so nothing is committed for them: the worker commits only over
offsets it started and finished (streams/runtime/offsets.py). On a revocation `drop` forgets the
records of the revoked partitions; their next owner fetches them again from the commit."""

from __future__ import annotations

import logging
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from adp.streams.kafka import topics
from adp.streams.runtime.lanes import LaneScheduler

log = logging.getLogger(__name__)


class LaneIntake:
    def __init__(self, consumer: AIOKafkaConsumer, task_type: str, prefetch: int, min_share: float):
        self.consumer = consumer
        self.topics = topics.lane_topics(task_type)  # highest lane first
        self.names = [topics.lane_of(t).name for t in self.topics]
        self._index = {t: i for i, t in enumerate(self.topics)}
        self.scheduler = LaneScheduler(len(self.topics), min_share)
        self.prefetch = max(1, prefetch)
        self.ready: list[deque[ConsumerRecord]] = [deque() for _ in self.topics]
        # offset after the last record fetched, per partition: with the highwater mark it says
        # how much of a lane is still on the broker
        self._fetched_to: dict[TopicPartition, int] = {}

    def lane(self, tp: TopicPartition) -> int:
        return self._index[tp.topic]

    def partitions(self) -> list[list[TopicPartition]]:
        """The assigned partitions of each lane."""
        by_lane: list[list[TopicPartition]] = [[] for _ in self.topics]
        for tp in self.consumer.assignment():
            by_lane[self.lane(tp)].append(tp)
        return by_lane

    def at_hand(self) -> int:
        return sum(len(r) for r in self.ready)

    def on_broker(self, tps: list[TopicPartition]) -> int:
        """Records of these partitions known to be on the broker and not fetched yet (from the
        highwater marks of the last fetch responses: a hint, never a promise)."""
        n = 0
        for tp in tps:
            end, fetched = self.consumer.highwater(tp), self._fetched_to.get(tp)
            if end is not None and fetched is not None:
                n += max(0, end - fetched)
        return n

    async def fill(self, wait_ms: int = 0) -> None:
        """Move fetched records into the lanes' buffers, highest lane first. With `wait_ms`,
        wait up to that long for records when no lane has any at hand. Pauses and resumes
        lanes first (see the module doc)."""
        by_lane = self.partitions()
        room = [self.prefetch - len(r) for r in self.ready]
        for i, tps in enumerate(by_lane):
            if tps and room[i] > 0:
                self.consumer.resume(*tps)
            elif tps:
                self.consumer.pause(*tps)
        polled = False
        for i, tps in enumerate(by_lane):
            if tps and room[i] > 0:
                self._add(await self.consumer.getmany(*tps, max_records=room[i]))
                polled = True
        if wait_ms and not self.at_hand():
            open_tps = [tp for i, tps in enumerate(by_lane) if room[i] > 0 for tp in tps]
            if open_tps:
                self._add(
                    await self.consumer.getmany(
                        *open_tps, timeout_ms=wait_ms, max_records=self.prefetch
                    )
                )
                polled = True
        if not polled:
            # nothing assigned, or every lane full: poll anyway, it keeps us in the group
            self._add(await self.consumer.getmany(timeout_ms=wait_ms, max_records=1))

    def _add(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            if records:
                self.ready[self.lane(tp)].extend(records)
                self._fetched_to[tp] = records[-1].offset + 1

    def take(self, n: int) -> list[ConsumerRecord]:
        """Up to `n` records to start now, one scheduler pick per slot
        (streams/runtime/lanes.py)."""
        by_lane = self.partitions()
        behind = [self.on_broker(tps) > 0 for tps in by_lane]
        taken = []
        for _ in range(n):
            ready = [bool(r) for r in self.ready]
            lane = self.scheduler.pick([r or b for r, b in zip(ready, behind)], ready)
            if lane is None:
                break
            taken.append(self.ready[lane].popleft())
        return taken

    def drop(self, revoked: set[TopicPartition]) -> None:
        """Forget what was fetched from partitions this member no longer owns."""
        dropped = 0
        for i, records in enumerate(self.ready):
            keep = deque(r for r in records if TopicPartition(r.topic, r.partition) not in revoked)
            dropped += len(records) - len(keep)
            self.ready[i] = keep
        for tp in revoked:
            self._fetched_to.pop(tp, None)
        if dropped:
            log.info("dropped %d fetched, unstarted task(s) of revoked partitions", dropped)

    def waiting(self) -> dict[str, int]:
        """Per lane name: records at hand here (fetched, not started)."""
        return {name: len(r) for name, r in zip(self.names, self.ready)}

    async def lag(self, committable: dict[TopicPartition, int | None]) -> dict[str, int]:
        """Per lane name: records between the end of each assigned partition and the point
        below which everything is done (`committable`, where tasks were started there)."""
        assigned = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(assigned) if assigned else {}
        first_at_hand: dict[TopicPartition, int] = {}
        for records in self.ready:
            for r in records:
                first_at_hand.setdefault(TopicPartition(r.topic, r.partition), r.offset)
        lag = dict.fromkeys(self.names, 0)
        for tp, end in ends.items():
            done = committable.get(tp)
            if done is None:
                done = first_at_hand.get(tp)
            if done is None:
                done = await self.consumer.position(tp)
            lag[self.names[self.lane(tp)]] += max(0, end - done)
        return lag
