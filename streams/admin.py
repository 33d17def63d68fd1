"""Kafka admin helpers: create the platform's topics, ask which brokers are up."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from adp.streams.topics import TopicSpec, platform_topics

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
