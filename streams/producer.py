"""`adp produce FILE`: validate a tasks.jsonl file and publish its tasks to Kafka.

Each good line becomes one Avro-encoded Task (adp.schemas.codec) on its type's priority lane,
adp.tasks.<task_type>[.high|.low] (streams/kafka/topics.py: priority 8-10 high, 4-7 the plain
default topic, 1-3 low), keyed by its task_id, sent by an idempotent producer with acks=all. A task
asking for k samples (`samples` on the line, or --samples) becomes k records, one per sample
(sample_index 0..k-1, keyed "<task_id>/<i>" for i > 0), so the samples spread over the partitions
and the runtimes of the group instead of running one after another on one consumer. Sends are
pipelined (a bounded number of records and bytes in flight) and every one is confirmed by the broker
before the command ends. Bad lines are reported with their line number and reason; they never stop
the good ones.

The file is streamed: a line is read, validated, encoded and handed to the producer before the
next is read, so files of any size go through in bounded memory. The broker connection is opened
at the first good task, so a file with nothing to send never needs a broker.

The command itself (table, progress bar, exit codes) is app/commands/produce.py.

Exit codes: 0 every line sent; 1 some lines rejected (the good ones were sent); 2 nothing to send
(empty file, file missing or unreadable, every line bad); 3 the broker is unreachable or a send
failed (the message says which bootstrap and how many tasks were confirmed).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from adp.connectors.tasks_source import parse_line, read_stream, read_tasks
from adp.core.errors import AdpError
from adp.core.settings import Settings
from adp.runtimes.verify import BadSpec, check_spec
from adp.schemas import codec
from adp.schemas.contracts import Task
from adp.streams.kafka import authz, clients
from adp.streams.kafka.topics import topic_for_task

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# A task is refused before sending if its encoding is over this; None: 15/16 of the
# max_message_bytes setting (headroom for the batch header and for gzip, which can grow
# incompressible data slightly).
MAX_TASK_BYTES: int | None = None
MAX_IN_FLIGHT = 2000  # records handed to the producer and not yet confirmed
MAX_IN_FLIGHT_BYTES = 64 * MiB  # ... and their encoded size
# k samples of one task at temperature 0 would be k copies of one greedy answer: samples of a
# task with k > 1 and no temperature of its own are drawn at this one (recorded in each record).
SAMPLE_TEMPERATURE = 1.0

Progress = Callable[[int, int], None]  # (bytes of the file read so far, file size)


class ProduceError(AdpError):
    """The broker could not be reached or a send failed. `confirmed` tasks were acknowledged
    before that (they are on the broker; re-producing the file is safe for the aggregator)."""

    def __init__(self, message: str, bootstrap: str, confirmed: int, report: ProduceReport):
        super().__init__(message)
        self.bootstrap = bootstrap
        self.confirmed = confirmed
        self.report = report


@dataclass
class ProduceReport:
    path: str
    bootstrap: str
    dry_run: bool = False
    sent: Counter = field(default_factory=Counter)  # task_type -> records (samples) confirmed
    tasks: Counter = field(default_factory=Counter)  # task_type -> distinct tasks among them
    by_topic: Counter = field(default_factory=Counter)  # lane topic -> records confirmed
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line_no, message)
    empty: bool = False  # the file holds no task line at all

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def topics(self) -> list[str]:
        return sorted(self.by_topic)

    @property
    def exit_code(self) -> int:
        if self.total_sent == 0:
            return 2
        return 1 if self.rejected else 0


def expand_samples(task: Task, samples: int | None = None) -> list[Task]:
    """The k records of a task: one per sample, each with its sample_index, the task's
    temperature (SAMPLE_TEMPERATURE when k > 1 and none is set) and seed + sample_index.
    `samples` is the --samples default for lines that do not set their own."""
    k = task.samples if "samples" in task.model_fields_set or samples is None else samples
    temperature = task.temperature
    if temperature is None and k > 1:
        temperature = SAMPLE_TEMPERATURE
    return [
        task.model_copy(
            update={
                "samples": k,
                "sample_index": i,
                "temperature": temperature,
                "seed": None if task.seed is None else task.seed + i,
            }
        )
        for i in range(k)
    ]


def task_limit(conf: Settings) -> int:
    return MAX_TASK_BYTES or conf.max_message_bytes - conf.max_message_bytes // 16


def encode_task(task: Task, limit: int = 30 * MiB) -> bytes | str:
    """The task's wire bytes, or why it cannot be sent (over `limit` bytes, unencodable)."""
    try:
        value = codec.encode(task)
    except UnicodeEncodeError as exc:  # a lone surrogate from a "\udxxx" JSON escape
        return f"text is not encodable as UTF-8 ({exc.reason} at character {exc.start})"
    except Exception as exc:
        return f"cannot be encoded: {type(exc).__name__}: {exc}"
    if len(value) > limit:
        return (
            f"encoded task is {len(value) / MiB:.1f} MiB, over the "
            f"{limit / MiB:.3g} MiB a task may be"
        )
    return value


def task_from_record(value: bytes | None, limit: int = 30 * MiB) -> Task | str:
    """A task record as runtimes read it: Avro (what `adp produce` writes) or plain JSON, one
    task object per record (what kcat or kafka-console-producer write), validated exactly as
    `adp produce` validates a line. Returns the Task or why the record is not one."""
    if not value:
        return "empty record: no task in it"
    if value[: len(codec.MAGIC)] == codec.MAGIC:
        try:
            return codec.decode(value, expect=Task)
        except codec.DecodeError as exc:
            return str(exc)
    task = parse_line(value)
    if isinstance(task, str):
        return f"not Avro, and not a valid plain JSON task: {task}"
    try:
        check_spec(task.verify)
    except BadSpec as exc:
        return str(exc)
    encoded = encode_task(task, limit)  # what adp produce would refuse, a runtime refuses
    return encoded if isinstance(encoded, str) else task


def _make_producer(conf: Settings) -> AIOKafkaProducer:
    # gzip: the one codec aiokafka supports without extra packages
    return clients.producer(conf, client_id="adp-produce", linger_ms=20, max_batch_size=512 * 1024)


def encode_samples(
    task: Task, samples: int | None, limit: int = 30 * MiB
) -> list[tuple[Task, bytes]] | str:
    """Every sample's record and wire bytes, or why the task cannot be sent (a verify spec no
    verifier can apply is refused here, not found out by the runtime)."""
    try:
        check_spec(task.verify)
    except BadSpec as exc:
        return str(exc)
    records = []
    for sample in expand_samples(task, samples):
        value = encode_task(sample, limit)
        if isinstance(value, str):
            return value
        records.append((sample, value))
    return records


class TaskPublisher:
    """Sends task records to their lane topics, pipelined: at most MAX_IN_FLIGHT records and
    MAX_IN_FLIGHT_BYTES in flight, every one confirmed by the broker (acks=all) before `drain`
    returns; confirmations are counted in `report`. Opens the producer, and checks the write
    ACL of each topic, at the first record, so nothing to send needs no broker. Anything that
    goes wrong raises ProduceError saying how many records were confirmed before it.

    Safe for concurrent senders (the synthesizer publishes for several parents at once): one
    producer is opened however many publish at once, and a confirmation is counted once
    whoever waits for it."""

    def __init__(self, conf: Settings, report: ProduceReport) -> None:
        self.conf, self.report = conf, report
        self.producer: AIOKafkaProducer | None = None
        self.pending: dict[asyncio.Future, tuple[str, str, int]] = {}  # -> (type, topic, bytes)
        self.in_flight_bytes = 0
        self.handed = 0
        self.writable: set[str] = set()
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> TaskPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def publish(self, topic: str, records: list[tuple[Task, bytes]]) -> None:
        """Hand a task's records (one per sample) to the producer, waiting for room first."""
        await self._open(topic)
        for task, value in records:
            while self.pending and (
                len(self.pending) >= MAX_IN_FLIGHT
                or self.in_flight_bytes + len(value) > MAX_IN_FLIGHT_BYTES
            ):
                done, _ = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
                self._settle(done)
            try:
                fut = await self.producer.send(topic, value=value, key=task.key.encode("utf-8"))
            except Exception as exc:
                raise self._fail("sending", exc) from None
            self.handed += 1
            self.pending[fut] = (task.task_type, topic, len(value))
            self.in_flight_bytes += len(value)
            if len(self.pending) % 256 == 0:  # harvest confirmations without waiting
                self._settle([f for f in self.pending if f.done()])

    async def drain(self) -> None:
        """Wait until every record handed over is confirmed (or raise why one was not)."""
        if self.pending:
            done, _ = await asyncio.wait(self.pending)
            self._settle(done)

    async def close(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            try:
                await asyncio.wait_for(producer.stop(), timeout=35)
            except Exception:
                log.warning("producer did not stop cleanly", exc_info=True)

    async def _open(self, topic: str) -> None:
        if topic in self.writable and self.producer is not None:
            return
        async with self._opening:
            try:
                if topic not in self.writable:  # refused now in one line, not per record later
                    await authz.require(self.conf, write=[topic])
                    self.writable.add(topic)
                if self.producer is None:
                    self.producer = await clients.start(_make_producer(self.conf), self.conf)
            except clients.KafkaClientError as exc:
                raise self._fail("", exc) from None

    def _settle(self, done) -> None:
        for fut in done:
            entry = self.pending.pop(fut, None)
            if entry is None:  # settled by another sender waiting on it too
                continue
            task_type, topic, nbytes = entry
            self.in_flight_bytes -= nbytes
            exc = fut.exception()
            if exc is not None:
                raise self._fail("sending", exc)
            self.report.sent[task_type] += 1
            self.report.by_topic[topic] += 1

    def _fail(self, what: str, exc: BaseException) -> ProduceError:
        confirmed = self.report.total_sent
        if isinstance(exc, clients.KafkaClientError):
            text = str(exc)
        else:
            text = str(clients.explain(exc, self.conf, what))
        return ProduceError(
            f"{text} ({confirmed} of {self.handed} tasks handed to the producer were confirmed)",
            self.conf.bootstrap,
            confirmed,
            self.report,
        )


def open_source(path: str | Path, conf: Settings, dry_run: bool) -> tuple[ProduceReport, Any, int]:
    """(report, the file's items, its size) for `path` ("-": standard input, size 0: unknown).
    Opens the file now: raises TaskFileError if it cannot."""
    if str(path) == "-":
        items = read_stream(sys.stdin.buffer, "<stdin>", max_line_bytes=conf.max_message_bytes)
        return ProduceReport("<stdin>", conf.bootstrap, dry_run=dry_run), items, 0
    path = Path(path)
    items = read_tasks(path, max_line_bytes=conf.max_message_bytes)
    return ProduceReport(str(path), conf.bootstrap, dry_run=dry_run), items, path.stat().st_size


async def produce_tasks(
    path: str | Path,
    conf: clients.Conn = None,
    progress: Progress | None = None,
    dry_run: bool = False,
    samples: int | None = None,
) -> ProduceReport:
    """Validate `path` ("-": standard input) and send every good task (k records for a task of
    k samples; `samples` is the k of lines that name none); returns what was sent and what was
    rejected.

    Raises TaskFileError if the file cannot be read, ProduceError if the broker cannot be
    reached or a send fails. With dry_run, validates and encodes only (no broker)."""
    conf = clients.connection(conf)
    limit = task_limit(conf)
    report, items, size = open_source(path, conf, dry_run)
    log.debug(
        "producing %s (%d bytes) to %s%s",
        report.path,
        size,
        conf.describe(),
        " (dry run)" if dry_run else "",
    )
    async with TaskPublisher(conf, report) as publisher:
        for item in items:
            if progress is not None:
                progress(item.end, size)
            if item.task is None:
                report.empty = report.empty or item.line_no == 0
                report.rejected.append((item.line_no, item.error or "invalid"))
                continue
            records = encode_samples(item.task, samples, limit)
            if isinstance(records, str):
                report.rejected.append((item.line_no, f"line {item.line_no}: {records}"))
                continue
            report.tasks[item.task.task_type] += 1
            topic = topic_for_task(item.task.task_type, item.task.priority)
            if dry_run:
                report.sent[item.task.task_type] += len(records)
                report.by_topic[topic] += len(records)
            else:
                await publisher.publish(topic, records)
        await publisher.drain()
    log.info(
        "%s %d tasks%s; rejected %d lines",
        "validated" if dry_run else "sent",
        report.total_sent,
        "".join(f", {n} to {t}" for t, n in sorted(report.by_topic.items())),
        len(report.rejected),
    )
    return report
