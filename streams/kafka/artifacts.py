"""Artifact bytes on Kafka: the files a step wrote travel beside its step event, not inside it.

Topic adp.artifacts (retention forever, like adp.steps). A kept file is cut into chunks of at
most CHUNK_BYTES, each one record keyed by the file's sha256 (so all chunks of a file land on one
partition, in order) with headers sha256 / chunk / chunks / size. `publish` returns only when
the broker has acknowledged every chunk, with the ArtifactLocation (topic, partition, the chunks'
offsets) that goes into the Artifact record of the step: the step event is sent after its bytes
are durable, so no step ever points at bytes that are not there.

`ArtifactFetcher` reads them back byte for byte (checking size and sha256) for the aggregator
(streams/aggregator/writer.py) and `adp replay`, and hands them to the sink, which stores them
next to the trajectory (connectors/sinks/base.py `artifact_name`: <task_id>/step-<n>/<name>)
before the trajectory itself, so a reader that sees a trajectory finds its files.

Why a topic and not the step event: a 5 MiB plot inside every replayed step event would make
adp.steps slow to read for everyone who only wants the steps (tail, status, replay); why not an
object store: the platform's one durable dependency is Kafka, and replay must regenerate the
files from Kafka alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from adp.schemas.contracts import Artifact, ArtifactLocation
from adp.streams.kafka import topics
from adp.streams.kafka.clients import Conn

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class ArtifactError(RuntimeError):
    """Bytes of an artifact could not be read back intact."""


async def publish(producer: AIOKafkaProducer, data: bytes, sha256: str) -> ArtifactLocation:
    """Send `data` as chunks keyed by its sha256; returns once every chunk is acknowledged."""
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    futures = []
    for i, chunk in enumerate(chunks):
        headers = [
            ("sha256", sha256.encode()),
            ("chunk", str(i).encode()),
            ("chunks", str(len(chunks)).encode()),
            ("size", str(len(data)).encode()),
        ]
        futures.append(
            await producer.send(topics.ARTIFACTS, chunk, key=sha256.encode(), headers=headers)
        )
    sent = await asyncio.gather(*futures)
    partitions = {m.partition for m in sent}
    if len(partitions) != 1:  # one key, one partition: anything else is a broker-side surprise
        raise ArtifactError(f"chunks of {sha256} landed on partitions {sorted(partitions)}")
    return ArtifactLocation(
        topic=topics.ARTIFACTS, partition=sent[0].partition, offsets=[m.offset for m in sent]
    )


class ArtifactFetcher:
    """Reads artifact bytes back by location; one consumer (no group) opened on first use."""

    def __init__(self, conf: Conn) -> None:
        self.bootstrap = conf  # Settings, or a bootstrap string (streams/kafka/clients.py)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            from adp.streams.kafka.reader import open_consumer

            self._consumer = await open_consumer(self.bootstrap)
        return self._consumer

    async def fetch(self, artifact: Artifact) -> bytes:
        loc = artifact.location
        if loc is None:
            raise ArtifactError(f"artifact {artifact.name} has no location")
        async with self._lock:  # one consumer, one read at a time
            consumer = await self._open()
            tp = TopicPartition(loc.topic, loc.partition)
            consumer.assign([tp])
            wanted = {offset: i for i, offset in enumerate(loc.offsets)}
            parts: dict[int, bytes] = {}
            consumer.seek(tp, min(loc.offsets))
            while len(parts) < len(wanted):
                batch = await consumer.getmany(tp, timeout_ms=10_000)
                records = batch.get(tp, [])
                if not records:
                    raise ArtifactError(
                        f"artifact {artifact.name} ({artifact.sha256[:12]}): "
                        f"chunks at {loc.topic}[{loc.partition}] not readable"
                    )
                for record in records:
                    if record.offset in wanted:
                        parts[wanted[record.offset]] = record.value or b""
                if records[-1].offset >= max(loc.offsets):
                    break
        data = b"".join(parts[i] for i in range(len(loc.offsets)) if i in parts)
        if len(parts) != len(loc.offsets) or hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise ArtifactError(
                f"artifact {artifact.name}: the bytes read back do not match "
                f"sha256 {artifact.sha256}"
            )
        return data

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
