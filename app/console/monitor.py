"""What the overview shows, read from the broker every few seconds and pushed to the pages:
per task type the numbers of `adp status` (streams/inspection/status.py's StatusReader), each
consumer group's members and lag per partition, events per second over the last minutes, the
dead letters, and whether the broker answers at all.

Nothing here joins a consumer group or commits anything. When the broker goes away the page
is told (broker "down", since when, why) and the monitor retries with a fresh connection until
it answers again; the console itself never stops over it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import asdict

from aiokafka import TopicPartition

from adp.app.console.hub import Hub
from adp.streams.inspection.status import Outcome, StatusReader
from adp.streams.kafka import topics
from adp.streams.kafka.clients import Conn, close, connection
from adp.streams.kafka.dlq import dlq_row
from adp.streams.kafka.reader import behind, open_consumer

log = logging.getLogger(__name__)

WINDOW = 600.0  # seconds of events/s history on the page
DLQ_KEEP = 500  # dead letters kept for the page (the newest)
READ_TIMEOUT = 10.0  # one round of reads; past it the broker counts as unreachable


class Monitor:
    def __init__(
        self,
        bootstrap: Conn,
        hub: Hub,
        interval: float = 2.0,
        aggregator_group: str = topics.AGGREGATOR_GROUP,
    ) -> None:
        self.bootstrap, self.hub, self.interval = connection(bootstrap), hub, interval
        self.aggregator_group = aggregator_group
        self.where = self.bootstrap.describe()  # for the page and the log: never a password
        self.broker = {"up": None, "bootstrap": self.where, "since": time.time(), "error": None}
        # trajectory key -> (type, success, verdict): kept across reconnections
        self.outcomes: dict[str, Outcome] = {}  # trajectory key -> latest (StatusReader)
        self.samples: deque[tuple[float, int, int, int]] = deque(maxlen=int(WINDOW / interval) + 2)
        self.dead_letters: deque[dict] = deque(maxlen=DLQ_KEEP)
        self.dlq_total = 0
        self.dlq_positions: dict[TopicPartition, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                async with StatusReader(
                    self.bootstrap, self.outcomes, coordinator_tries=0
                ) as reader:
                    dlq = await open_consumer(self.bootstrap)
                    try:
                        while not stop.is_set():
                            await asyncio.wait_for(self._round(reader, dlq), READ_TIMEOUT)
                            backoff = 1.0
                            await _wait(stop, self.interval)
                    finally:
                        await close(dlq)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
                    raise  # we are being stopped
                # anything else means the broker is gone, refuses or does not answer in time
                # (aiokafka even lets a CancelledError of its own out when a connection drops
                # mid-request): say so, retry with a fresh connection
                self._set_broker(False, _describe(exc))
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    async def _round(self, reader: StatusReader, dlq) -> None:
        rows = await reader.read()
        aggregator = await reader.group(self.aggregator_group, [topics.STEPS])
        steps = sum(p.end for p in aggregator.partitions)
        trajectories = await reader.end_total(topics.TRAJECTORIES)
        produced = sum(r.produced for r in rows)
        self.samples.append((time.time(), steps, produced, trajectories))
        dlq_changed = await self._read_dead_letters(reader, dlq)
        self._set_broker(True, None)
        groups = [asdict(r.group) | {"lag": r.group.lag} for r in rows if r.group]
        groups.append(asdict(aggregator) | {"lag": aggregator.lag})
        self.hub.publish(
            "overview",
            {
                "time": time.time(),
                "types": [asdict(r) | {"group": None} for r in rows],
                "groups": groups,
                "pass_at_k_models": reader.pass_at_k("model"),
                "rates": self.rates(),
                "totals": {
                    "steps": steps,
                    "produced": produced,
                    "trajectories": trajectories,
                    "dead_letters": self.dlq_total,
                },
            },
        )
        if dlq_changed:
            self.hub.publish("dlq", {"total": self.dlq_total})

    def rates(self) -> dict[str, list[list[float]]]:
        """Per second between consecutive samples: steps (events on adp.steps), tasks
        produced, trajectories published; [unix time, rate] pairs over the window."""
        series: dict[str, list[list[float]]] = {"steps": [], "tasks": [], "trajectories": []}
        points = list(self.samples)
        for (t0, *a), (t1, *b) in itertools.pairwise(points):
            dt = max(t1 - t0, 1e-6)
            for name, before, after in zip(series, a, b):
                series[name].append([round(t1, 3), round(max(0, after - before) / dt, 2)])
        return series

    async def _read_dead_letters(self, reader: StatusReader, consumer) -> bool:
        """Read what is new on adp.dlq since the last round (positions survive reconnects)."""
        parts = await reader.partitions(topics.DLQ)
        if not parts:
            return False
        if set(consumer.assignment()) != set(parts):
            consumer.assign(parts)
            consumer.pause(*parts)  # fetched only below: see StatusReader's end_offsets
            starts = await consumer.beginning_offsets(parts)
            for tp in parts:
                consumer.seek(tp, max(self.dlq_positions.get(tp, 0), starts[tp]))
        ends = await consumer.end_offsets(parts)
        new = 0
        if await behind(consumer, ends):
            consumer.resume(*parts)
            try:
                while await behind(consumer, ends):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        self.dead_letters.extend(dlq_row(r) | {"offset": r.offset} for r in records)
                        new += len(records)
            finally:
                consumer.pause(*parts)
        for tp in parts:
            self.dlq_positions[tp] = await consumer.position(tp)
        self.dlq_total += new
        return new > 0

    def _set_broker(self, up: bool, error: str | None) -> None:
        if up != self.broker["up"] or (not up and error != self.broker["error"]):
            if up != self.broker["up"]:
                self.broker["since"] = time.time()
                if up:
                    log.info("Kafka at %s answers", self.where)
                else:
                    log.warning("Kafka at %s unreachable: %s (retrying)", self.where, error)
            self.broker.update(up=up, error=error)
            self.hub.publish("broker", dict(self.broker))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READ_TIMEOUT:.0f} s"
    if isinstance(exc, asyncio.CancelledError):
        return "connection to the broker lost"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
