"""What the synthesizer reads beside its parents, without a consumer group (nothing committed):

- KnownTasks: every task on the task topics (adp.tasks.*), from the beginning and then as they
  come: their ids (a candidate whose id is among them was produced by an earlier run and is not
  produced again), their descriptions (the duplicate filter's index), which of them this
  synthesizer made (--max-tasks counts them) and the highest generation among them all;
- TrajectoryWatch: adp.trajectories from where it ended when the synthesizer started, for the
  trajectories of the candidates it runs on trial (--solve).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from adp.schemas import codec
from adp.schemas import lineage as schema
from adp.schemas.contracts import Task, Trajectory
from adp.streams.kafka import clients, topics
from adp.streams.kafka.reader import (
    KafkaReadError,
    capture_range,
    open_consumer,
    read_range,
    topic_partitions,
)
from adp.streams.producer import task_from_record
from adp.streams.synthesis.dedup import DedupIndex

log = logging.getLogger(__name__)


async def _partitions(conf: clients.Conn, names: list[str]) -> list[TopicPartition]:
    """The partitions of those of `names` that exist."""
    found: list[TopicPartition] = []
    for name in names:
        try:
            found += await topic_partitions(conf, name)
        except KafkaReadError as exc:
            if "does not exist" not in str(exc):
                raise
    return found


class Tail:
    """A group-less consumer reading `parts` onward from given offsets, feeding each batch."""

    def __init__(self, consumer: AIOKafkaConsumer, feed: Callable[[list], None]) -> None:
        self.consumer, self.feed = consumer, feed
        self.task: asyncio.Task | None = None

    def start(self, positions: dict[TopicPartition, int]) -> None:
        self.consumer.assign(list(positions))
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        self.task = asyncio.create_task(self._run(), name="synthesis-tail")

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            except KafkaError as exc:  # the broker is away: keep trying, say so once
                if not failing:
                    log.warning("reading %s paused: %s", self.consumer.assignment(), exc)
                failing = True
                await asyncio.sleep(1.0)
                continue
            failing = False
            for records in batches.values():
                self.feed(records)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()


@dataclass
class KnownTasks:
    conf: clients.Conn
    dedup: DedupIndex
    produced: set[str]  # every task_id on the task topics
    synthesizer: str  # tasks whose lineage names it are this synthesizer's
    on_ours: Callable[[str], None] = lambda _task_id: None
    max_generation: int = 0  # the highest generation on the task topics
    tail: Tail | None = field(default=None, repr=False)
    # read here (`produced` also holds what the synthesizer sent before this reader saw it)
    seen: set[str] = field(default_factory=set, repr=False)

    async def catch_up(self, follow: bool = False) -> int:
        """Read the task topics to their end now; with `follow`, keep reading after that.
        Returns the number of distinct tasks known."""
        parts = await _partitions(self.conf, topics.family_topics("tasks"))
        consumer = await open_consumer(self.conf)
        try:
            rng = await capture_range(consumer, parts, since=None)
            await read_range(consumer, rng, lambda _tp, records: self.feed(records))
        except BaseException:
            await consumer.stop()
            raise
        if follow:
            consumer.resume(*consumer.assignment())
            self.tail = Tail(consumer, self.feed)
            self.tail.start(rng.end)
        else:
            await consumer.stop()
        return len(self.produced)

    def feed(self, records: list) -> None:
        for record in records:
            task = task_from_record(record.value)
            if isinstance(task, Task):
                self.learn(task)

    def learn(self, task: Task) -> None:
        if task.task_id in self.seen:
            return
        self.seen.add(task.task_id)
        self.produced.add(task.task_id)
        self.dedup.add(task.task_id, task.description)
        self.max_generation = max(self.max_generation, schema.generation_of(task))
        lineage = schema.lineage_of(task)
        if lineage is not None and lineage.get("synthesizer") == self.synthesizer:
            self.on_ours(task.task_id)

    async def close(self) -> None:
        if self.tail is not None:
            await self.tail.close()


class TrajectoryWatch:
    """Outcomes of the trajectories of watched tasks, from where adp.trajectories ended when
    `start` was called."""

    def __init__(self, conf: clients.Conn) -> None:
        self.conf = conf
        self.outcomes: dict[str, dict[int, bool]] = {}  # watched task_id -> sample -> success
        self.waiting: dict[str, tuple[int, asyncio.Future]] = {}  # task_id -> (samples, done)
        self.tail: Tail | None = None

    async def start(self) -> None:
        parts = await _partitions(self.conf, [topics.TRAJECTORIES])
        consumer = await open_consumer(self.conf)
        self.tail = Tail(consumer, self.feed)
        self.tail.start(await consumer.end_offsets(parts))

    def expect(self, task_id: str) -> None:
        self.outcomes.setdefault(task_id, {})

    def feed(self, records: list) -> None:
        for record in records:
            if record.value is None:
                continue
            try:
                t = codec.decode(record.value, expect=Trajectory)
            except codec.DecodeError:
                continue  # not ours to judge: the aggregator never writes these
            seen = self.outcomes.get(t.task_id)
            if seen is not None:
                seen[t.sample_index] = t.success
                self._wake(t.task_id)

    def _wake(self, task_id: str) -> None:
        samples, done = self.waiting.get(task_id, (0, None))
        if done is not None and not done.done() and len(self.outcomes[task_id]) >= samples:
            done.set_result(None)

    async def rate(self, task_id: str, samples: int, timeout: float) -> float | None:
        """The pass rate of `task_id` once its `samples` trajectories are in; None if they
        are not in within `timeout` seconds."""
        self.expect(task_id)
        done = asyncio.get_running_loop().create_future()
        self.waiting[task_id] = (samples, done)
        self._wake(task_id)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return None
        finally:
            self.waiting.pop(task_id, None)
        seen = self.outcomes.pop(task_id)
        return sum(seen.values()) / samples

    async def close(self) -> None:
        if self.tail is not None:
            await self.tail.close()
