"""adp.dlq: messages the platform could not process, kept with their original bytes.

Every component dead-letters the same way: the original key and value, plus headers saying why
and where the message came from, so `adp dlq` can show it and a fixed message can be
re-produced from the original bytes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone

import click
from aiokafka.structs import ConsumerRecord
from rich.console import Console
from rich.table import Table

from adp.core.settings import settings
from adp.streams import topics
from adp.streams.reader import read_topic

REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, COMPONENT = (
    "adp-reason", "adp-source-topic", "adp-source-partition", "adp-source-offset",
    "adp-component")


def dlq_headers(reason: str, topic: str, partition: int, offset: int,
                component: str = "runtime") -> list[tuple[str, bytes]]:
    return [
        (REASON, reason.encode("utf-8", "replace")[:4096]),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (COMPONENT, component.encode()),
    ]


def dlq_row(record: ConsumerRecord) -> dict:
    """One dead letter as `adp dlq` and the console show it: when, key, why, from where."""
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
    return {
        "time": datetime.fromtimestamp(record.timestamp / 1000, timezone.utc)
        .isoformat(timespec="seconds"),
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "reason": headers.get(REASON, ""),
        "source": f"{headers.get(SOURCE_TOPIC, '?')}[{headers.get(SOURCE_PARTITION, '?')}]"
                  f"@{headers.get(SOURCE_OFFSET, '?')}",
        "component": headers.get(COMPONENT, ""),
        "bytes": len(record.value or b""),
    }


async def read_dlq(bootstrap: str, limit: int | None = None) -> list[dict]:
    """Everything currently in adp.dlq (oldest first), as dicts for display or JSON."""
    rows = [dlq_row(r) for r in await read_topic(bootstrap, topics.DLQ)]
    return rows[-limit:] if limit else rows


@click.command("dlq")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers [ADP_BOOTSTRAP].")
@click.option("--limit", default=100, show_default=True, help="Show the newest N (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_command(bootstrap: str | None, limit: int, as_json: bool) -> None:
    """List dead letters in adp.dlq: when, which key, why, and where they came from."""
    rows = asyncio.run(read_dlq(bootstrap or settings().bootstrap, limit or None))
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"adp.dlq ({len(rows)} shown)")
    for col in ("time", "key", "reason", "source", "bytes"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["time"], row["key"] or "-", row["reason"], row["source"],
                      str(row["bytes"]))
    Console().print(table)
