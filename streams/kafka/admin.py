"""Kafka admin helpers: create, describe and grow the platform's topics; ask which brokers are
up. `conf` is as in streams/kafka/clients.py (Settings, a bootstrap string, or None)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from adp.streams.kafka import clients
from adp.streams.kafka.topics import TopicSpec, platform_topics

log = logging.getLogger(__name__)


@asynccontextmanager
async def admin_client(conf: clients.Conn = None, **options) -> AsyncIterator[AIOKafkaAdminClient]:
    conf = clients.connection(conf)
    client = await clients.start(clients.admin(conf, **options), conf)
    try:
        with clients.kafka_errors(conf):
            yield client
    finally:
        await clients.close(client)


async def cluster_broker_ids(conf: clients.Conn = None) -> set[int]:
    async with admin_client(conf, request_timeout_ms=5000) as admin:
        described = await admin.describe_cluster()
        return {b["node_id"] for b in described["brokers"]}


async def ensure_topics(
    conf: clients.Conn = None,
    replication: int = 1,
    specs: list[TopicSpec] | None = None,
    partitions: dict[str, int] | None = None,
) -> list[str]:
    """Create any missing platform topic (or each of `specs`) with its partition count and
    configs. Existing topics are left as they are. Idempotent; returns the names it created.
    A topic this client may not see (no DESCRIBE) counts as missing: Kafka then refuses to
    create it, and that is an error."""
    conf = clients.connection(conf)
    specs = specs or platform_topics(
        min_insync_replicas=min(2, replication),
        partitions=partitions,
        max_message_bytes=conf.max_message_bytes,
    )
    async with admin_client(conf) as admin:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(s.name, s.partitions, replication, topic_configs=s.configs) for s in missing]
        )
    created = []
    for topic, code, *message in response.topic_errors:
        if code == TopicAlreadyExistsError.errno:  # another process won the race
            continue
        if code:
            raise clients.explain(
                for_code(code)(f"{topic}: {message[0] if message else ''}"),
                conf,
                f"creating {topic}",
            )
        created.append(topic)
    if created:
        sizes = {s.name: s.partitions for s in specs}
        log.info("created topics %s", ", ".join(f"{t} ({sizes[t]} partitions)" for t in created))
    return created


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


async def describe_topics(conf: clients.Conn, names: list[str]) -> dict[str, TopicInfo]:
    """The named topics that exist, with partition count, replication and the configs set on
    them (not broker defaults)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async with admin_client(conf) as admin:
        described = await admin.describe_topics(names)
        found = {
            d["topic"]: d for d in described if not d.get("error_code") and d.get("partitions")
        }
        configs: dict[str, dict[str, str]] = {name: {} for name in found}
        if found:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in found]
            )
            for response in responses:
                for resource in response.resources:
                    name, entries = resource[3], resource[4]
                    # entry: (name, value, read_only, is_default|config_source, is_sensitive, ...)
                    configs[name] = {e[0]: e[1] for e in entries if _set_on_topic(e)}
    return {
        name: TopicInfo(
            name, len(d["partitions"]), len(d["partitions"][0]["replicas"]), configs.get(name, {})
        )
        for name, d in found.items()
    }


def _set_on_topic(entry: tuple) -> bool:
    # DescribeConfigs v1+: config_source 1 = DYNAMIC_TOPIC_CONFIG
    return len(entry) > 3 and entry[3] == 1


async def partition_counts(conf: clients.Conn, names: list[str]) -> dict[str, int]:
    """Partitions of each named topic that exists (what components size themselves by)."""
    async with admin_client(conf) as admin:
        described = await admin.describe_topics(names)
    return {
        d["topic"]: len(d["partitions"])
        for d in described
        if not d.get("error_code") and d.get("partitions")
    }


async def grow_partitions(conf: clients.Conn, counts: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Raise each topic's partition count to the given number (Kafka can only add partitions).
    Returns topic -> (before, after) for the topics changed."""
    current = await partition_counts(conf, list(counts))
    missing = sorted(set(counts) - set(current))
    if missing:
        raise ValueError(f"no such topic: {', '.join(missing)}")
    shrink = {t: (current[t], n) for t, n in counts.items() if n < current[t]}
    if shrink:
        raise ValueError(
            "Kafka cannot remove partitions: "
            + ", ".join(f"{t} has {a}, asked for {b}" for t, (a, b) in shrink.items())
        )
    grow = {t: n for t, n in counts.items() if n > current[t]}
    if grow:
        async with admin_client(conf) as admin:
            response = await admin.create_partitions(
                {t: NewPartitions(total_count=n) for t, n in grow.items()}
            )
        for topic, code, message in response.topic_errors:
            if code:
                raise for_code(code)(f"{topic}: {message}")
        # done when the brokers' metadata says so: whoever reads the counts next must see them
        deadline = time.monotonic() + 60
        while (now := await partition_counts(conf, list(grow))) != grow:
            if time.monotonic() > deadline:
                raise clients.KafkaClientError(
                    f"partitions added, but the brokers still report {now} after 60s"
                )
            await asyncio.sleep(0.2)
        log.debug("grew %s", ", ".join(f"{t} {current[t]} -> {n}" for t, n in grow.items()))
    return {t: (current[t], n) for t, n in grow.items()}
