"""`adp tail`: follow adp.steps live (streams/inspection/tail.py), pretty by default, JSON lines
for pipes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime

import click
from rich.console import Console
from rich.markup import escape

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings
from adp.schemas.contracts import StepEvent
from adp.streams.inspection.tail import StepFilter, as_json, follow, parse_since
from adp.streams.kafka.topics import LANE_NAMES, lane_for_priority


def as_line(e: StepEvent, width: int = 100) -> str:
    when = datetime.fromtimestamp(e.timestamp).strftime("%H:%M:%S")
    head = f"[dim]{when}[/] [bold]{escape(e.task_id)}[/] [dim]{e.task_type}/{e.attempt_id[:8]}[/]"
    if e.event_type == "started":
        lane = (
            f" [dim](priority {e.task.priority}, {lane_for_priority(e.task.priority).name} lane)[/]"
            if e.task
            else ""
        )
        return f"{head} [cyan]started[/] on {escape(e.runtime_id)}{lane}"
    if e.event_type == "finished":
        f = e.finish
        mark = "[green]✓ succeeded[/]" if f.success else f"[red]✗ failed[/] ({f.error_type})"
        return (
            f"{head} {mark} after {f.step_count} steps, {f.total_duration:.1f}s: "
            f"{escape(_short(f.final_result or f.error or '', width))}"
        )
    s = e.step
    mark = "[green]✓[/]" if s.success else "[red]✗[/]"
    params = _short(json.dumps(s.action_params, ensure_ascii=False), width // 2)
    return (
        f"{head} step {s.step_id} {mark} [yellow]{escape(s.action_type)}[/] "
        f"{escape(params)} -> {escape(_short(s.observation, width))}"
    )


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.command("tail")
@click.option("--task", "task_ids", multiple=True, help="Only this task id (repeatable).")
@click.option(
    "--type",
    "task_type",
    type=click.Choice(["code", "web", "reasoning"]),
    help="Only this task type.",
)
@click.option("--runtime", "runtime_id", help="Only events of this runtime id.")
@click.option(
    "--lane",
    type=click.Choice(LANE_NAMES),
    help="Only tasks of this priority lane (high: priority 8-10, default: 4-7, "
    "low: 1-3), from their started event on.",
)
@click.option(
    "--success/--failed",
    "success",
    default=None,
    help="Only successful / failed steps and finishes.",
)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event kept.")
@click.option("--since", help="Start at a time: 10m, 2h, 1d ago, or an ISO time.")
@click.option(
    "--json",
    "json_out",
    is_flag=True,
    help="One JSON StepEvent per line, as adp.steps holds it: a step's LLM request may hold "
    "only the messages it added after the first prefix_messages of step prefix_step's "
    "(docs/step-encoding.md; exports and the console show requests whole).",
)
@click.option(
    "-n",
    "--max-messages",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after printing N events (after filters).",
)
@click.option(
    "-f/-e",
    "--follow/--exit-at-end",
    "follow_",
    default=None,
    help="Keep following new events, or exit at the end of what adp.steps holds "
    "now. Default: exit at the end when the output is not a terminal and "
    "--from-beginning or --since was given (so `adp tail --from-beginning "
    "--json | jq ...` ends), follow otherwise.",
)
@kafka_options
def tail_command(
    task_ids,
    task_type,
    runtime_id,
    lane,
    success,
    from_beginning,
    since,
    json_out,
    max_messages,
    follow_,
    conf: Settings,
) -> None:
    """Follow step events on adp.steps as runtimes emit them. Ctrl-C stops."""
    keep = StepFilter(frozenset(task_ids), task_type, runtime_id, success, lane)
    console, errors = Console(highlight=False), Console(stderr=True)
    if follow_ is None:
        follow_ = sys.stdout.isatty() or not (from_beginning or since)

    def emit(event: StepEvent | None, warning: str | None) -> None:
        if warning:
            errors.print(f"[yellow]{escape(warning)}")
        elif json_out:
            sys.stdout.write(as_json(event) + "\n")
            sys.stdout.flush()
        else:
            console.print(as_line(event, max(40, console.width - 40)))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await follow(
            conf,
            keep,
            emit,
            from_beginning,
            parse_since(since) if since else None,
            stop,
            max_messages=max_messages,
            until_end=not follow_,
        )

    try:
        asyncio.run(main())
    except BrokenPipeError:  # `adp tail | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
