"""Trajectories written back to Kafka: `adp verify kafka` publishes re-judged trajectories to
adp.trajectories under their key (acks=all, idempotent); the compacted topic then holds the new
version and the aggregator's sink rewrites the file."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from adp.connectors.sinks.base import BaseSink
from adp.schemas import codec
from adp.schemas.contracts import Trajectory
from adp.streams.kafka import clients, oversized
from adp.streams.kafka.topics import TRAJECTORIES


class KafkaTrajectorySink(BaseSink):
    """Publishes trajectories to adp.trajectories under their key (acks=all, idempotent): the
    compacted topic then holds the new version, and the aggregator's sink rewrites the file."""

    kind = "kafka"

    def __init__(self, conf: clients.Conn) -> None:
        self.conf = clients.connection(conf)
        self.producer: AIOKafkaProducer | None = None

    async def write(self, trajectory: Trajectory) -> str:
        if self.producer is None:
            self.producer = await clients.start(
                clients.producer(self.conf, client_id="adp-verify"), self.conf
            )
        sent = await oversized.send(  # over the record limit: in chunks (oversized.py)
            self.producer,
            TRAJECTORIES,
            codec.encode(trajectory),
            trajectory.key.encode(),
            limit=oversized.record_limit(self.conf.max_message_bytes),
        )
        meta = await sent
        return f"{TRAJECTORIES}[{meta.partition}]@{meta.offset}"

    async def close(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await clients.close(producer)
