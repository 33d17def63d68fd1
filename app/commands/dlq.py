"""`adp dlq`: list the dead letters in adp.dlq (the header contract is streams/kafka/dlq.py)."""

from __future__ import annotations

import asyncio
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings
from adp.streams.kafka.dlq import read_dlq


@click.command("dlq")
@kafka_options
@click.option("--limit", default=100, show_default=True, help="Show the newest N (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_command(limit: int, as_json: bool, conf: Settings) -> None:
    """List dead letters in adp.dlq: when, which key, why, and where they came from."""
    rows = asyncio.run(read_dlq(conf, limit or None))
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"adp.dlq ({len(rows)} shown)")
    for col in ("time", "key", "reason", "source", "bytes"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            row["time"], row["key"] or "-", row["reason"], row["source"], str(row["bytes"])
        )
    Console().print(table)
