"""`adp tail`: follow adp.steps live, pretty by default, JSON lines for pipes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import click
from aiokafka import TopicPartition
from rich.console import Console
from rich.markup import escape

from adp.schemas import codec
from adp.core.settings import Settings
from adp.schemas.contracts import StepEvent
from adp.streams import kafka, topics
from adp.streams.reader import behind, topic_partitions
from adp.streams.topics import LANE_NAMES, lane_for_priority


def parse_since(text: str, now: float | None = None) -> float:
    """'10m', '2h', '30s', '1d' ago, or an ISO 8601 time -> unix seconds."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 10m, 2h, 1d or 2026-11-27T10:00:00")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


@dataclass
class StepFilter:
    task_ids: frozenset[str] = frozenset()
    task_type: str | None = None
    runtime_id: str | None = None
    success: bool | None = None  # on step and finished events; started events pass
    # Priority lane (topics.LANES). Only a started event carries the task and so its priority:
    # the attempts seen starting in the lane are remembered until they finish, and their
    # other events pass; events of attempts that started before tail's first one do not.
    lane: str | None = None
    _in_lane: set[tuple[str, str]] = field(default_factory=set)  # (task_id, attempt_id)

    def __call__(self, e: StepEvent) -> bool:
        if self.task_ids and e.task_id not in self.task_ids:
            return False
        if self.task_type and e.task_type != self.task_type:
            return False
        if self.runtime_id and e.runtime_id != self.runtime_id:
            return False
        if self.lane and not self._lane_matches(e):
            return False
        if self.success is not None:
            outcome = e.step.success if e.step else e.finish.success if e.finish else None
            if outcome is not None and outcome != self.success:
                return False
        return True

    def _lane_matches(self, e: StepEvent) -> bool:
        attempt = (e.task_id, e.attempt_id)
        if e.event_type == "started" and e.task is not None:
            if lane_for_priority(e.task.priority).name != self.lane:
                return False
            self._in_lane.add(attempt)
            return True
        if e.event_type == "finished":
            if attempt in self._in_lane:
                self._in_lane.discard(attempt)
                return True
            return False
        return attempt in self._in_lane


def as_json(e: StepEvent) -> str:
    return json.dumps(e.model_dump(mode="json"), ensure_ascii=False)


def as_line(e: StepEvent, width: int = 100) -> str:
    when = datetime.fromtimestamp(e.timestamp).strftime("%H:%M:%S")
    head = f"[dim]{when}[/] [bold]{escape(e.task_id)}[/] [dim]{e.task_type}/{e.attempt_id[:8]}[/]"
    if e.event_type == "started":
        lane = f" [dim](priority {e.task.priority}, {lane_for_priority(e.task.priority).name} " \
               "lane)[/]" if e.task else ""
        return f"{head} [cyan]started[/] on {escape(e.runtime_id)}{lane}"
    if e.event_type == "finished":
        f = e.finish
        mark = "[green]✓ succeeded[/]" if f.success else f"[red]✗ failed[/] ({f.error_type})"
        return (f"{head} {mark} after {f.step_count} steps, {f.total_duration:.1f}s: "
                f"{escape(_short(f.final_result or f.error or '', width))}")
    s = e.step
    mark = "[green]✓[/]" if s.success else "[red]✗[/]"
    params = _short(json.dumps(s.action_params, ensure_ascii=False), width // 2)
    return (f"{head} step {s.step_id} {mark} [yellow]{escape(s.action_type)}[/] "
            f"{escape(params)} -> {escape(_short(s.observation, width))}")


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def follow(conf: kafka.Conn, keep: StepFilter, emit, from_beginning: bool = False,
                 since: float | None = None, stop: asyncio.Event | None = None,
                 max_messages: int | None = None, until_end: bool = False) -> int:
    """Read adp.steps without a consumer group (nothing committed, no effect on anyone) and
    call `emit(event, warning)` for each event that passes `keep`. Ends on `stop`, after
    `max_messages` events emitted, or (until_end) at the end offsets of when it started.
    Returns the number of events emitted."""
    stop = stop or asyncio.Event()
    parts = await topic_partitions(conf, topics.STEPS)
    consumer = await kafka.start(kafka.consumer(conf=conf, client_id="adp-tail"), conf)
    emitted = 0
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
            for tp in parts:
                consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
        elif from_beginning:
            await consumer.seek_to_beginning(*parts)
        else:
            for tp in parts:
                consumer.seek(tp, ends[tp])
        while not stop.is_set():
            if until_end and not await behind(consumer, ends):
                break
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    # The time index finds the first record at or after `since`, but create
                    # times are not monotonic within a partition: older ones can follow it.
                    if since is not None and r.timestamp < since * 1000:
                        continue
                    if until_end and r.offset >= ends[TopicPartition(r.topic, r.partition)]:
                        continue
                    try:
                        event = codec.decode(r.value, expect=StepEvent)
                    except codec.DecodeError as exc:
                        emit(None, f"skipping {r.topic}[{r.partition}]@{r.offset}: {exc}")
                        continue
                    if keep(event):
                        emit(event, None)
                        emitted += 1
                        if max_messages is not None and emitted >= max_messages:
                            return emitted
    finally:
        await kafka.close(consumer)
    return emitted


@click.command("tail")
@click.option("--task", "task_ids", multiple=True, help="Only this task id (repeatable).")
@click.option("--type", "task_type", type=click.Choice(["code", "web", "reasoning"]),
              help="Only this task type.")
@click.option("--runtime", "runtime_id", help="Only events of this runtime id.")
@click.option("--lane", type=click.Choice(LANE_NAMES),
              help="Only tasks of this priority lane (high: priority 8-10, default: 4-7, "
                   "low: 1-3), from their started event on.")
@click.option("--success/--failed", "success", default=None,
              help="Only successful / failed steps and finishes.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event kept.")
@click.option("--since", help="Start at a time: 10m, 2h, 1d ago, or an ISO time.")
@click.option("--json", "json_out", is_flag=True, help="One JSON StepEvent per line.")
@click.option("-n", "--max-messages", type=click.IntRange(min=1), default=None,
              help="Exit after printing N events (after filters).")
@click.option("-f/-e", "--follow/--exit-at-end", "follow_", default=None,
              help="Keep following new events, or exit at the end of what adp.steps holds "
                   "now. Default: exit at the end when the output is not a terminal and "
                   "--from-beginning or --since was given (so `adp tail --from-beginning "
                   "--json | jq ...` ends), follow otherwise.")
@kafka.kafka_options
def tail_command(task_ids, task_type, runtime_id, lane, success, from_beginning, since,
                 json_out, max_messages, follow_, conf: Settings) -> None:
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
        await follow(conf, keep, emit, from_beginning, parse_since(since) if since else None,
                     stop, max_messages=max_messages, until_end=not follow_)

    try:
        asyncio.run(main())
    except BrokenPipeError:  # `adp tail | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
