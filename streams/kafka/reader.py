"""Bounded reads of Kafka topics without a consumer group: nothing is committed, so inspection
tools (adp replay, adp dlq, adp status) and tests never disturb the platform's consumers.

A read captures the end offsets first and stops there, so it always terminates even while
producers keep writing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from adp.streams.kafka import clients

MAX_RECORDS = 20_000  # per getmany
FETCH_BYTES = 64 * 1024 * 1024  # per fetch request; a single record may be up to 32 MiB


class KafkaReadError(clients.KafkaClientError):
    """The broker could not be reached or the topic read; the message says which and why."""


@dataclass
class Range:
    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.end[tp] - self.start[tp]) for tp in self.start)


async def open_consumer(conf: clients.Conn) -> AIOKafkaConsumer:
    conf = clients.connection(conf)
    try:
        return await clients.start(
            clients.consumer(
                conf=conf,
                client_id="adp-reader",
                max_partition_fetch_bytes=FETCH_BYTES,
                fetch_max_bytes=FETCH_BYTES,
                request_timeout_ms=30000,
            ),
            conf,
        )
    except clients.KafkaClientError as exc:
        raise KafkaReadError(str(exc)) from None


async def topic_partitions(conf: clients.Conn, topic: str) -> list[TopicPartition]:
    """The topic's partitions, asked of the cluster (a fresh consumer's metadata cache is
    empty until it subscribes)."""
    from adp.streams.kafka.admin import admin_client

    conf = clients.connection(conf)
    try:
        async with admin_client(conf, request_timeout_ms=30000) as admin:
            [described] = await admin.describe_topics([topic])
    except clients.KafkaClientError as exc:
        raise KafkaReadError(str(exc)) from None
    except (TimeoutError, KafkaError, OSError) as exc:
        raise KafkaReadError(f"cannot describe {topic} at {conf.describe()}: {exc}") from exc
    if described.get("error_code") or not described.get("partitions"):
        raise KafkaReadError(
            f"topic {topic} does not exist at {conf.describe()} (nothing "
            f"produced yet, or another cluster?)"
        )
    return [
        TopicPartition(topic, p["partition"])
        for p in sorted(described["partitions"], key=lambda p: p["partition"])
    ]


async def capture_range(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], since: float | None
) -> Range:
    """Start offsets (beginning, or the first record at/after `since`) and the end offsets now."""
    end = await consumer.end_offsets(parts)
    if since is None:
        start = await consumer.beginning_offsets(parts)
    else:
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
        start = {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in parts}
    return Range(start={tp: min(start[tp], end[tp]) for tp in parts}, end=end)


async def batches_in_range(
    consumer: AIOKafkaConsumer,
    rng: Range,
    on_progress: Callable[[int], None] | None = None,
) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Each partition's records in [start, end), batch by batch, in offset order per
    partition, as (partition, records): a caller that yields what it reads holds one batch."""
    remaining = [tp for tp in rng.start if rng.start[tp] < rng.end[tp]]
    consumer.assign(list(rng.start))
    for tp in rng.start:
        consumer.seek(tp, rng.start[tp])
    done_parts = [tp for tp in rng.start if tp not in remaining]
    if done_parts:
        consumer.pause(*done_parts)
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=MAX_RECORDS)
        for tp, records in batches.items():
            end = rng.end[tp]
            records = [r for r in records if r.offset < end]
            if records:
                yield tp, records
        finished = []
        for tp in remaining:
            if await consumer.position(tp) >= rng.end[tp]:
                finished.append(tp)
        if finished:
            consumer.pause(*finished)
            remaining = [tp for tp in remaining if tp not in finished]
        if on_progress is not None:
            done = 0
            for tp in rng.start:
                pos = rng.end[tp] if tp not in remaining else await consumer.position(tp)
                done += max(0, min(pos, rng.end[tp]) - rng.start[tp])
            on_progress(done)


async def read_range(
    consumer: AIOKafkaConsumer,
    rng: Range,
    on_records: Callable[[TopicPartition, list], Any],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Feed each partition's records in [start, end) to `on_records(tp, records)` (awaited if
    it returns an awaitable), batch by batch, in offset order per partition. Returns the number
    of records read."""
    read = 0
    async for tp, records in batches_in_range(consumer, rng, on_progress):
        read += len(records)
        result = on_records(tp, records)
        if asyncio.iscoroutine(result):
            await result
    return read


async def read_topic(conf: clients.Conn, topic: str) -> list[ConsumerRecord]:
    """Every record in `topic` up to its end now, partition by partition in offset order."""
    parts = await topic_partitions(conf, topic)
    records: list[ConsumerRecord] = []
    consumer = await open_consumer(conf)
    try:
        rng = await capture_range(consumer, parts, since=None)
        await read_range(consumer, rng, lambda _tp, batch: records.extend(batch))
    finally:
        await consumer.stop()
    return records


async def read_partition(
    conf: clients.Conn, topic: str, partition: int, start: int, end: int
) -> list[ConsumerRecord]:
    """The records of one partition in [start, end), in offset order."""
    tp = TopicPartition(topic, partition)
    records: list[ConsumerRecord] = []
    consumer = await open_consumer(conf)
    try:
        await read_range(
            consumer, Range({tp: start}, {tp: end}), lambda _tp, batch: records.extend(batch)
        )
    finally:
        await consumer.stop()
    return records


async def behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Is the consumer's position still below any of the given end offsets?"""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False
