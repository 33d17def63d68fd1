"""The stall half of the skip guard (streams/aggregator/faust_guard.py), on a fake consumer: pure
logic,
the broker-facing half is exercised by tests/test_aggregator.py and the fault suite."""

from __future__ import annotations

from aiokafka import TopicPartition

from adp.streams.aggregator import faust_guard
from adp.streams.aggregator.faust_guard import STALL_AFTER, SkipGuard


class FakeConsumer:
    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.seeks: list[tuple[int, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("adp.steps", p) for p in self.ends}

    def highwater(self, tp: TopicPartition) -> int:
        return self.ends[tp.partition]

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


class Message:
    topic = "adp.steps"

    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset


async def test_a_partition_is_sought_back_only_when_faust_stays_silent(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(faust_guard.time, "monotonic", lambda: clock[0])
    guard = SkipGuard("unused:9092", "group", "adp.steps")
    guard._idle_since = clock[0]
    guard._next = {0: 5}
    assert await guard.missed_before(Message(0, 5)) == []  # in order: nothing missed
    consumer = FakeConsumer({0: 9})  # 6, 7, 8 exist but never come
    guard.batch_started()
    clock[0] += STALL_AFTER * 3  # the agent itself is slow: not Faust's silence
    await guard.refetch_stalled(consumer)
    assert consumer.seeks == []
    guard.batch_done()
    clock[0] += STALL_AFTER / 2
    await guard.refetch_stalled(consumer)
    assert consumer.seeks == [], "idle for less than STALL_AFTER"
    clock[0] += STALL_AFTER
    await guard.refetch_stalled(consumer)
    assert consumer.seeks == [(0, 6)] and guard.refetches == 1
