"""`adp produce FILE`: the command around streams/producer.py (progress bar, summary table,
--json, exit codes)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import click

from adp.app.commands.options import kafka_options
from adp.connectors.tasks_source import TaskFileError
from adp.core.settings import Settings
from adp.schemas.contracts import MAX_SAMPLES, TaskType
from adp.streams.kafka.topics import LANES, task_topic
from adp.streams.producer import SAMPLE_TEMPERATURE, ProduceError, ProduceReport, produce_tasks

SHOW_REJECTED = 50


def say(message: str) -> None:
    """One unwrapped line on stderr (colour only on a terminal)."""
    click.echo(message, err=True)


def _print_summary(report: ProduceReport, out, quiet: bool) -> None:
    from rich.table import Table

    if not quiet:
        title = "dry run: would send" if report.dry_run else f"sent to {report.bootstrap}"
        sampled = report.sent != report.tasks  # some task asked for k > 1 samples
        table = Table(
            title=title,
            title_justify="left",
            caption=(
                f"{sum(report.tasks.values())} tasks as {report.total_sent} samples, one record "
                "each"
                if sampled
                else None
            ),
        )
        table.add_column("task type")
        table.add_column("topic")
        table.add_column("samples" if sampled else "tasks", justify="right")
        for t in TaskType:
            for lane in LANES:  # the default lane always, the others where tasks went
                topic = task_topic(t, lane)
                if report.by_topic.get(topic) or lane.suffix == "":
                    table.add_row(t.value, topic, str(report.by_topic.get(topic, 0)))
        table.add_row(
            "rejected",
            "",
            str(len([r for r in report.rejected if r[0] > 0])),
            style="red" if report.rejected else None,
        )
        out.print(table)
    real = [r for r in report.rejected if r[0] > 0]
    if real:
        say(click.style(f"{len(real)} rejected line(s):", fg="red", bold=True))
        for _, message in real[:SHOW_REJECTED]:
            say(message)
        if len(real) > SHOW_REJECTED:
            say(f"... and {len(real) - SHOW_REJECTED} more")


def _nothing_message(report: ProduceReport) -> str:
    if report.empty:
        return f"nothing to send: {report.path} contains no tasks"
    return f"nothing to send: all {len(report.rejected)} task lines of {report.path} were rejected"


def _as_json(report: ProduceReport, error: str | None = None) -> str:
    return json.dumps(
        {
            "file": report.path,
            "bootstrap": report.bootstrap,
            "dry_run": report.dry_run,
            "sent": {t.value: report.sent.get(t.value, 0) for t in TaskType},
            "tasks": {t.value: report.tasks.get(t.value, 0) for t in TaskType},
            "topics": dict(sorted(report.by_topic.items())),
            "total_sent": report.total_sent,
            "rejected": [{"line": n, "error": m} for n, m in report.rejected if n > 0],
            "error": error,
        },
        ensure_ascii=False,
    )


@click.command("produce")
@click.argument("file", type=click.Path(path_type=Path, allow_dash=True))
@kafka_options
@click.option("--dry-run", is_flag=True, help="Validate and encode every line; send nothing.")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, no summary table: only rejected lines and errors.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the outcome as one JSON object on stdout (records per type, tasks, "
    "topics, rejected lines, error); no table, no progress bar.",
)
@click.option(
    "--samples",
    "-k",
    type=click.IntRange(1, MAX_SAMPLES),
    default=None,
    help="Run each task k times (k independent samples, k trajectories) unless its "
    "line sets `samples` itself. Samples of k > 1 without a `temperature` of "
    f"their own are drawn at temperature {SAMPLE_TEMPERATURE:g}; a line's `seed` "
    "becomes seed + sample index.",
)
def produce_command(
    file: Path, dry_run: bool, quiet: bool, as_json: bool, samples: int | None, conf: Settings
) -> None:
    """Validate the tasks in FILE (tasks.jsonl; - reads standard input) and publish them to
    Kafka.

    FILE has one JSON object per line: task_id (unique), task_type (reasoning|code|web),
    description, and optionally expected_tools, max_steps, timeout, priority, constraints,
    verify (how to check the result), samples, temperature, seed; other keys are kept as
    metadata. Each good line is sent, Avro-encoded, to its type's priority lane keyed by
    task_id (idempotent producer, acks=all): adp.tasks.<task_type>.high for priority 8-10,
    adp.tasks.<task_type> for 4-7 (5 is the default), adp.tasks.<task_type>.low for 1-3.
    Runtimes take higher lanes first. A task of k samples is k records (sample i > 0 keyed
    <task_id>/<i>). Every send is confirmed before the command ends. A bad line is reported
    with its line number and reason; the other lines still go through.

    \b
    Exit codes:
      0  every task line was sent
      1  some lines were rejected (listed); the good ones were sent
      2  nothing to send: empty file, missing/unreadable file, or every line bad
      3  the broker is unreachable, refused us, or a send failed (says how many were confirmed)
    """
    from rich.console import Console

    out = Console(soft_wrap=False)
    if quiet or as_json:
        logging.getLogger("adp").setLevel(logging.WARNING)
    bar, progress = _progress_bar(show=not quiet and not as_json and sys.stderr.isatty())
    try:
        with bar:
            report = asyncio.run(
                produce_tasks(file, conf, progress=progress, dry_run=dry_run, samples=samples)
            )
    except TaskFileError as exc:
        say(f"adp produce: nothing to send: {exc}")
        sys.exit(2)
    except ProduceError as exc:
        if as_json:
            click.echo(_as_json(exc.report, str(exc)))
        else:
            _print_summary(exc.report, out, quiet=True)
        say(f"adp produce: {exc}")
        sys.exit(3)
    except KeyboardInterrupt:
        say("adp produce: interrupted; tasks not confirmed may not have been sent")
        sys.exit(130)
    _finish(report, out, quiet, as_json)


def _progress_bar(show: bool):
    """A byte progress bar on stderr (hidden unless `show`) and the callback that moves it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("[bold]produce"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )
    bar_task = bar.add_task("produce", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(bar_task, completed=done, total=total or None)

    return bar, progress


def _finish(report: ProduceReport, out, quiet: bool, as_json: bool) -> None:
    """Print the outcome and exit with the report's code."""
    code = report.exit_code
    if as_json:
        click.echo(_as_json(report, _nothing_message(report) if code == 2 else None))
        sys.exit(code)
    _print_summary(report, out, quiet=quiet or code == 2)
    if code == 2:
        say(f"adp produce: {_nothing_message(report)}")
    sys.exit(code)
