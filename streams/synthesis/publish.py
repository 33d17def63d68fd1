"""Producing accepted tasks: through `adp produce`'s own validation and publisher
(streams/producer.py), every record confirmed before the caller moves on."""

from __future__ import annotations

from adp.schemas.contracts import Task
from adp.streams.kafka import clients
from adp.streams.kafka.topics import topic_for_task
from adp.streams.producer import ProduceError, TaskPublisher, encode_samples


async def publish(publisher: TaskPublisher, tasks: list[Task], limit: int) -> int:
    """Produce `tasks` (every sample of each) as `adp produce` does and wait until the broker
    confirmed every record; returns how many records. A Kafka failure is KafkaClientError."""
    sent = 0
    try:
        for task in tasks:
            records = encode_samples(task, None, limit)
            if isinstance(records, str):  # checked on acceptance, lineage included
                raise ValueError(f"{task.task_id}: {records}")
            await publisher.publish(topic_for_task(task.task_type, task.priority), records)
            sent += len(records)
        await publisher.drain()
    except ProduceError as exc:
        raise clients.KafkaClientError(str(exc)) from None
    return sent
