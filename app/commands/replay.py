"""`adp replay`: the command (options, progress bar, summary) around streams/inspection/replay.py
and its spread over processes (streams/inspection/replay_workers.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from typing import Any

import click

from adp.app.commands.aggregate import forget_done_option
from adp.app.commands.options import kafka_options
from adp.app.commands.progress import ranged_bar
from adp.connectors.sinks.base import SinkError
from adp.connectors.sinks.destinations import open_sink
from adp.core.errors import AdpError
from adp.core.process import relax_gc
from adp.core.settings import Settings
from adp.streams.aggregator.assembly import DEFAULT_EXPIRE_AFTER
from adp.streams.inspection.replay import SOURCES, ReplaySummary
from adp.streams.inspection.replay_workers import replay_spread


@click.command("replay")
@click.option(
    "--out",
    "out",
    required=True,
    help="new destination: a folder, or s3://bucket/prefix (same names and bytes as "
    "the aggregator's sinks; files of the same name are replaced)",
)
@click.option(
    "--source",
    type=click.Choice(sorted(SOURCES)),
    default="steps",
    show_default=True,
    help="steps: rebuild from adp.steps with the assembler; trajectories: re-sink "
    "the published records of adp.trajectories (last per task_id wins)",
)
@click.option(
    "--from-beginning",
    is_flag=True,
    default=False,
    help="read from the oldest record kept (the default without --since)",
)
@click.option(
    "--since",
    default=None,
    help="only records with a timestamp at/after this: 10m, 2h, 1d ago or ISO time",
)
@click.option(
    "--until",
    default=None,
    help="only records with a timestamp before this (same forms as --since)",
)
@click.option(
    "--expire-after",
    type=float,
    default=DEFAULT_EXPIRE_AFTER,
    show_default=True,
    help="as the aggregator's --expire-after; use the same value to get its files",
)
@forget_done_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="processes that share the partitions (the same files either way) "
    "[default: one per CPU, at most one per partition and per 20,000 records]",
)
@kafka_options
@click.option("--json", "json_out", is_flag=True, help="print the summary as one JSON object")
def replay_command(
    out: str,
    source: str,
    from_beginning: bool,
    since: str | None,
    until: str | None,
    expire_after: float,
    forget_done_after: float | None,
    workers: int | None,
    json_out: bool,
    conf: Settings,
) -> None:
    """Rebuild trajectories from the log into a NEW destination, without disturbing the live
    aggregator: no consumer group, nothing committed, nothing produced. Reads up to the end
    offsets at start, then stops; prints a summary (events read, trajectories written,
    duplicates / expired / incomplete attempts)."""
    if from_beginning and since:
        raise click.UsageError("--from-beginning and --since exclude each other")
    if expire_after <= 0:
        raise click.BadParameter("must be positive", param_hint="--expire-after")
    t_since, t_until = _window(since, until)
    if not logging.getLogger("adp").isEnabledFor(logging.DEBUG):  # no -v
        # the assembler logs one line per expiry; aiokafka one per retry, where our error says
        # it once
        logging.getLogger("adp.streams.aggregator.assembly").setLevel(logging.WARNING)
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    options = {
        "until": t_until,
        "expire_after": expire_after,
        "forget_done_after": forget_done_after,
    }

    def stop(signum: int, _frame: Any) -> None:
        # SIGTERM ends the command like Ctrl-C does: through its finally blocks, which stop
        # the worker processes and release what they shared
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    relax_gc()
    summary = asyncio.run(_replay(conf, out, workers, source, t_since, options))
    if json_out:
        click.echo(json.dumps(summary.as_dict()))
    else:
        for line in summary.lines():
            click.echo(line)


def _window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """--since and --until as timestamps (None: open on that side)."""
    from adp.streams.inspection.tail import parse_since

    now = time.time()
    t_since = parse_since(since, now) if since else None
    t_until = parse_since(until, now) if until else None
    if t_since is not None and t_until is not None and t_until <= t_since:
        raise click.UsageError("--until must be after --since")
    return t_since, t_until


async def _replay(
    conf: Settings,
    out: str,
    workers: int | None,
    source: str,
    t_since: float | None,
    options: dict[str, Any],
) -> ReplaySummary:
    """The replay into `out` under a progress bar; a failed sink write is a SinkError."""
    sink = await open_sink(out)
    bar, update = ranged_bar("replay", "events")
    if bar is not None:
        bar.start()
    try:
        return await replay_spread(conf, sink, out, workers, source, t_since, options, update)
    except AdpError:
        raise
    except Exception as exc:  # a sink write that failed: OSError, S3SinkError, ...
        raise SinkError(f"writing to {out} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if bar is not None:
            bar.stop()
        await sink.close()
