"""`adp tail`: follow adp.steps live, pretty by default, JSON lines for pipes."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition

from adp.core.errors import BadInput
from adp.schemas import codec
from adp.schemas.contracts import StepEvent
from adp.streams.kafka import clients, topics
from adp.streams.kafka.reader import behind, topic_partitions
from adp.streams.kafka.topics import lane_for_priority


def parse_since(text: str, now: float | None = None) -> float:
    """'10m', '2h', '30s', '1d' ago, or an ISO 8601 time -> unix seconds."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{text!r}: use e.g. 10m, 2h, 1d or 2026-11-27T10:00:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
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


async def follow(
    conf: clients.Conn,
    keep: StepFilter,
    emit,
    from_beginning: bool = False,
    since: float | None = None,
    stop: asyncio.Event | None = None,
    max_messages: int | None = None,
    until_end: bool = False,
) -> int:
    """Read adp.steps without a consumer group (nothing committed, no effect on anyone) and
    call `emit(event, warning)` for each event that passes `keep`. Ends on `stop`, after
    `max_messages` events emitted, or (until_end) at the end offsets of when it started.
    Returns the number of events emitted."""
    stop = stop or asyncio.Event()
    parts = await topic_partitions(conf, topics.STEPS)
    consumer = await clients.start(clients.consumer(conf=conf, client_id="adp-tail"), conf)
    emitted = 0
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await _seek_start(consumer, parts, ends, since, from_beginning)
        while not stop.is_set():
            if until_end and not await behind(consumer, ends):
                break
            batch = await consumer.getmany(timeout_ms=300)
            for r in _in_window(batch, since, ends if until_end else None):
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
        await clients.close(consumer)
    return emitted


async def _seek_start(consumer, parts, ends, since: float | None, from_beginning: bool) -> None:
    """Each partition at its first record at/after `since`, at its beginning, or at its end."""
    if since is not None:
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
        for tp in parts:
            consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
    elif from_beginning:
        await consumer.seek_to_beginning(*parts)
    else:
        for tp in parts:
            consumer.seek(tp, ends[tp])


def _in_window(batch: dict, since: float | None, ends: dict | None) -> Iterator:
    """The records of `batch` at/after `since` and, with `ends`, before those end offsets."""
    for records in batch.values():
        for r in records:
            # The time index finds the first record at or after `since`, but create times are
            # not monotonic within a partition: older ones can follow it.
            if since is not None and r.timestamp < since * 1000:
                continue
            if ends is not None and r.offset >= ends[TopicPartition(r.topic, r.partition)]:
                continue
            yield r
