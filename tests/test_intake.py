"""The runtime's lane intake (streams/runtime/intake.py) against a fake consumer: which lanes it
pauses, what it takes, what a revocation drops. Pure bookkeeping; the real consumer and broker are
in tests/test_runtime_discipline.py."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from adp.streams.kafka import topics
from adp.streams.runtime.intake import LaneIntake

HIGH, DEFAULT, LOW = topics.lane_topics("code")


def record(topic: str, partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


class FakeConsumer:
    """What the intake uses of AIOKafkaConsumer: assignment, pause/resume, getmany from a
    per-partition backlog (honouring pauses and max_records), highwater."""

    def __init__(self, backlog: dict[TopicPartition, int]):
        self.backlog = {
            tp: [record(tp.topic, tp.partition, o) for o in range(n)] for tp, n in backlog.items()
        }
        self._paused: set[TopicPartition] = set()
        self.polls = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.backlog)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.backlog[tp]) + (self.backlog[tp][0].offset if self.backlog[tp] else 0)

    async def getmany(self, *tps, timeout_ms=0, max_records=None):
        self.polls += 1
        out = {}
        budget = max_records or 10**9
        for tp in tps or sorted(self.backlog):
            if tp in self._paused or not budget:
                continue
            taken, self.backlog[tp] = self.backlog[tp][:budget], self.backlog[tp][budget:]
            if taken:
                out[tp] = taken
                budget -= len(taken)
        return out


def tp(topic: str, partition: int = 0) -> TopicPartition:
    return TopicPartition(topic, partition)


async def test_a_full_lane_is_paused_and_lanes_with_room_keep_fetching():
    consumer = FakeConsumer({tp(HIGH): 0, tp(DEFAULT): 0, tp(LOW): 10})
    intake = LaneIntake(consumer, "code", prefetch=3, min_share=0)
    await intake.fill()
    assert intake.waiting() == {"high": 0, "default": 0, "low": 3}
    await intake.fill()  # the low lane holds enough for every slot: paused, nothing more taken
    assert consumer.paused() == {tp(LOW)} and intake.waiting()["low"] == 3
    consumer.backlog[tp(HIGH)].append(record(HIGH, 0, 0))  # urgent work arrives meanwhile
    await intake.fill()
    assert intake.waiting() == {"high": 1, "default": 0, "low": 3}
    assert [r.topic for r in intake.take(2)] == [HIGH, LOW]
    await intake.fill()  # room again: the low lane resumes
    assert consumer.paused() == set() and intake.waiting()["low"] == 3


async def test_every_fill_polls_even_when_every_lane_is_full():
    consumer = FakeConsumer({tp(DEFAULT): 5})
    intake = LaneIntake(consumer, "code", prefetch=2, min_share=0)
    await intake.fill()
    polls = consumer.polls
    await intake.fill()
    await intake.fill()
    assert consumer.paused() == {tp(DEFAULT)} and consumer.polls == polls + 2


async def test_records_of_a_partition_start_in_offset_order():
    consumer = FakeConsumer({tp(LOW, 0): 3, tp(LOW, 1): 3})
    intake = LaneIntake(consumer, "code", prefetch=10, min_share=0)
    await intake.fill()
    taken = intake.take(6)
    for p in (0, 1):
        assert [r.offset for r in taken if r.partition == p] == [0, 1, 2]


async def test_a_revocation_drops_only_the_revoked_partitions_records():
    consumer = FakeConsumer({tp(HIGH, 0): 2, tp(HIGH, 1): 2, tp(LOW, 0): 2})
    intake = LaneIntake(consumer, "code", prefetch=10, min_share=0)
    await intake.fill()
    intake.drop({tp(HIGH, 1), tp(LOW, 0)})
    assert intake.waiting() == {"high": 2, "default": 0, "low": 0}
    assert {(r.topic, r.partition) for r in intake.take(10)} == {(HIGH, 0)}


async def test_a_lower_lane_known_on_the_broker_earns_its_share():
    consumer = FakeConsumer({tp(HIGH): 20, tp(LOW): 20})
    intake = LaneIntake(consumer, "code", prefetch=4, min_share=0.25)
    lanes = []
    for _ in range(5):
        await intake.fill()
        lanes += [r.topic for r in intake.take(4)]
    assert lanes.count(LOW) == 5 and lanes.count(HIGH) == 15
