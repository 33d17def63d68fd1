"""Kafka admin helpers: create the platform's topics, ask which brokers are up."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from aiokafka.errors import TopicAlreadyExistsError

from streams.topics import TopicSpec, platform_topics

log = logging.getLogger(__name__)


async def cluster_broker_ids(bootstrap: str) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_cluster()
        return {b["node_id"] for b in described["brokers"]}
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, replication: int = 1,
                        specs: list[TopicSpec] | None = None) -> list[str]:
    """Create any missing platform topic with its partition count and configs. Idempotent;
    returns the names it created."""
    specs = specs or platform_topics(min_insync_replicas=min(2, replication))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(s.name, s.partitions, replication, topic_configs=s.configs)
                    for s in missing
                ])
            except TopicAlreadyExistsError:  # another process won the race
                pass
            log.info("created topics %s", ", ".join(s.name for s in missing))
        return [s.name for s in missing]
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record in `topic` up to its current end (no consumer group, nothing committed).
    For inspection tools and tests; streaming consumers read incrementally instead."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=33554432)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while await behind(consumer, ends):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def behind(consumer: AIOKafkaConsumer, ends: dict) -> bool:
    """Is the consumer's position still below any of the given end offsets?"""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False
