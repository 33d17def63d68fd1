"""The dead-letter contract of adp.dlq: messages the platform could not process, kept with their
original bytes.

Every component dead-letters the same way: the original key and value, plus the headers below
saying why and where the message came from, so `adp dlq` (app/commands/dlq.py) and the console
can show it (dlq_row, read_dlq) and a fixed message can be re-produced from the original bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from adp.streams.kafka import topics
from adp.streams.kafka.clients import Conn
from adp.streams.kafka.reader import read_topic

REASON = "adp-reason"  # why: "undecodable StepEvent: ...", "invalid StepEvent: ...", ...
SOURCE_TOPIC = "adp-source-topic"
SOURCE_PARTITION = "adp-source-partition"
SOURCE_OFFSET = "adp-source-offset"
COMPONENT = "adp-component"  # runtime | aggregator
MAX_REASON_BYTES = 4096


def dlq_headers(
    reason: str, topic: str, partition: int, offset: int, component: str = "runtime"
) -> list[tuple[str, bytes]]:
    """The headers of a dead letter for the message at topic[partition]@offset."""
    return [
        (REASON, reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (COMPONENT, component.encode()),
    ]


@dataclass(frozen=True)
class DeadLetterOrigin:
    """What a dead letter's headers say (fields are '?' / '' where a header is missing)."""

    reason: str
    topic: str
    partition: str
    offset: str
    component: str

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | None) -> DeadLetterOrigin:
        found = {k: v.decode("utf-8", "replace") for k, v in headers or ()}
        return cls(
            reason=found.get(REASON, ""),
            topic=found.get(SOURCE_TOPIC, "?"),
            partition=found.get(SOURCE_PARTITION, "?"),
            offset=found.get(SOURCE_OFFSET, "?"),
            component=found.get(COMPONENT, ""),
        )

    @property
    def source(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def dlq_row(record: ConsumerRecord) -> dict:
    """One dead letter as `adp dlq` and the console show it: when, key, why, from where."""
    origin = DeadLetterOrigin.from_headers(record.headers)
    return {
        "time": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds"),
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "reason": origin.reason,
        "source": origin.source,
        "component": origin.component,
        "bytes": len(record.value or b""),
    }


async def read_dlq(conf: Conn, limit: int | None = None) -> list[dict]:
    """Everything currently in adp.dlq (oldest first), as dicts for display or JSON."""
    rows = [dlq_row(r) for r in await read_topic(conf, topics.DLQ)]
    return rows[-limit:] if limit else rows
