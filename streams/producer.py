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


class TaskSender:
    """Sends task records to their lanes: every record confirmed by the broker (acks=all,
    idempotent), pipelined with at most MAX_IN_FLIGHT records and MAX_IN_FLIGHT_BYTES handed to
    the producer and not yet confirmed, each topic's write permission checked once (refused in
    one line, not per record), the producer opened at the first record. `adp produce` and the
    synthesizer (streams/synthesis/) both send through it.

    `send` returns the record's delivery future; a failed delivery also makes every later
    `send` and `flush` raise it (the raw aiokafka exception; clients.KafkaClientError when the
    broker cannot be reached or the topic not written)."""

    def __init__(self, conf: Settings, client_id: str = "adp-produce") -> None:
        self.conf, self.client_id = conf, client_id
        self.producer: AIOKafkaProducer | None = None
        self.pending: dict[asyncio.Future, tuple[str, str, int]] = {}  # -> (type, topic, bytes)
        self.in_flight_bytes = 0
        self.handed = 0  # records handed to the producer
        self.sent: Counter = Counter()  # task_type -> records confirmed
        self.by_topic: Counter = Counter()  # lane topic -> records confirmed
        self.failure: BaseException | None = None
        self._writable: set[str] = set()
        self._opening = asyncio.Lock()  # concurrent senders open one producer

    @property
    def confirmed(self) -> int:
        return sum(self.sent.values())

    async def open_topic(self, topic: str) -> None:
        if topic in self._writable and self.producer is not None:
            return
        async with self._opening:
            await self._open(topic)

    async def _open(self, topic: str) -> None:
        if topic not in self._writable:
            await authz.require(self.conf, write=[topic])
            self._writable.add(topic)
        if self.producer is None:
            # gzip: the one codec aiokafka supports without extra packages
            self.producer = await clients.start(
                clients.producer(
                    self.conf, client_id=self.client_id, linger_ms=20, max_batch_size=512 * 1024
                ),
                self.conf,
            )

    async def send(self, task: Task, value: bytes) -> asyncio.Future:
        """Hand one record (a sample of `task`, encoded) to the producer, keyed by its key."""
        topic = topic_for_task(task.task_type, task.priority)
        await self.open_topic(topic)
        while self.pending and (
            len(self.pending) >= MAX_IN_FLIGHT
            or self.in_flight_bytes + len(value) > MAX_IN_FLIGHT_BYTES
        ):
            await asyncio.wait(list(self.pending), return_when=asyncio.FIRST_COMPLETED)
        self._raise_failure()
        fut = await self.producer.send(topic, value=value, key=task.key.encode("utf-8"))
        self.handed += 1
        self.pending[fut] = (task.task_type, topic, len(value))
        self.in_flight_bytes += len(value)
        fut.add_done_callback(self._settle)
        return fut

    def _settle(self, fut: asyncio.Future) -> None:
        task_type, topic, nbytes = self.pending.pop(fut)
        self.in_flight_bytes -= nbytes
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            self.failure = self.failure or exc or asyncio.CancelledError()
            return
        self.sent[task_type] += 1
        self.by_topic[topic] += 1

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def flush(self) -> None:
        """Wait until every record handed over is confirmed; raise the first failure."""
        if self.pending:
            await asyncio.wait(list(self.pending))
        self._raise_failure()

    async def close(self) -> None:
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.stop(), timeout=35)
            except Exception:
                log.warning("producer did not stop cleanly", exc_info=True)
            self.producer = None


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
    bootstrap = conf.bootstrap
    limit = task_limit(conf)
    if str(path) == "-":
        report = ProduceReport("<stdin>", bootstrap, dry_run=dry_run)
        items = read_stream(sys.stdin.buffer, "<stdin>", max_line_bytes=conf.max_message_bytes)
        size = 0  # unknown: the progress bar shows bytes read
    else:
        path = Path(path)
        report = ProduceReport(str(path), bootstrap, dry_run=dry_run)
        # opens the file: raises TaskFileError now if it cannot
        items = read_tasks(path, max_line_bytes=conf.max_message_bytes)
        size = path.stat().st_size
    log.debug(
        "producing %s (%d bytes) to %s%s",
        report.path,
        size,
        conf.describe(),
        " (dry run)" if dry_run else "",
    )
    sender = TaskSender(conf)
    try:
        for item in items:
            if progress is not None:
                progress(item.end, size)
            await _produce_item(item, sender, report, samples, limit)
        await sender.flush()
    except clients.KafkaClientError as exc:
        raise _produce_error(exc, sender, report, conf) from None
    except AdpError:
        raise
    except Exception as exc:  # a send the broker did not confirm
        raise _produce_error(exc, sender, report, conf) from None
    finally:
        _copy_counts(sender, report)
        await sender.close()
    log.info(
        "%s %d tasks%s; rejected %d lines",
        "validated" if dry_run else "sent",
        report.total_sent,
        "".join(f", {n} to {t}" for t, n in sorted(report.by_topic.items())),
        len(report.rejected),
    )
    return report


async def _produce_item(
    item, sender: TaskSender, report: ProduceReport, samples: int | None, limit: int
) -> None:
    if item.task is None:
        if item.line_no == 0:
            report.empty = True
        report.rejected.append((item.line_no, item.error or "invalid"))
        return
    records = encode_samples(item.task, samples, limit)
    if isinstance(records, str):
        report.rejected.append((item.line_no, f"line {item.line_no}: {records}"))
        return
    report.tasks[item.task.task_type] += 1
    if report.dry_run:
        topic = topic_for_task(item.task.task_type, item.task.priority)
        report.sent[item.task.task_type] += len(records)
        report.by_topic[topic] += len(records)
        return
    for task, value in records:
        await sender.send(task, value)


def _copy_counts(sender: TaskSender, report: ProduceReport) -> None:
    if not report.dry_run:
        report.sent, report.by_topic = Counter(sender.sent), Counter(sender.by_topic)


def _produce_error(
    exc: BaseException, sender: TaskSender, report: ProduceReport, conf: Settings
) -> ProduceError:
    _copy_counts(sender, report)
    if isinstance(exc, clients.KafkaClientError):
        text = str(exc)
    else:
        text = str(clients.explain(exc, conf, "sending"))
    return ProduceError(
        f"{text} ({sender.confirmed} of {sender.handed} tasks handed to the producer were "
        "confirmed)",
        conf.bootstrap,
        sender.confirmed,
        report,
    )
