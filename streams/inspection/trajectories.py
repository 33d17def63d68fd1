"""Stored trajectories as a source and a destination, for `adp export` and `adp verify`.

A SOURCE is one of:
  a folder      every *.json under it (the file sink's layout: <task_id>.json and
                <task_id>/<i>.json for samples); other files are ignored
  s3://b/p      the S3 sink's objects under the prefix: per-task *.json, and jsonl-hourly
                *.jsonl parts (a key written twice keeps the line with the latest finished_at)
  kafka         the adp.trajectories topic, read to its current end without a consumer group;
                the last record of each key wins, as compaction keeps it (two passes: memory
                follows the number of keys, not the topic's size)

Files or records that are not trajectories are skipped and listed in the ReadReport with the
reason, never silently. Written back (adp verify), a trajectory goes where it came from, through
the sink connectors/sinks/destinations.py opens for the same SOURCE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from adp.connectors.sinks.destinations import KAFKA
from adp.core.errors import BadInput
from adp.schemas import codec
from adp.schemas.contracts import Trajectory
from adp.streams.kafka import clients, oversized
from adp.streams.kafka.artifacts import ArtifactError, ArtifactFetcher
from adp.streams.kafka.reader import (
    KafkaReadError,
    batches_in_range,
    capture_range,
    open_consumer,
    topic_partitions,
)
from adp.streams.kafka.topics import TRAJECTORIES

SHOWN_PROBLEMS = 20


class SourceError(BadInput):
    """The source cannot be read at all (missing folder, no broker, no bucket)."""


@dataclass
class ReadReport:
    source: str
    read: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    def skip(self, where: str, why: str) -> None:
        self.problems.append((where, why))


def _parse(data: bytes | str | dict, where: str, report: ReadReport) -> Trajectory | None:
    try:
        if isinstance(data, dict):
            return Trajectory.model_validate(data)
        return Trajectory.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(map(str, first["loc"])) or "document"
        report.skip(
            where,
            f"not a trajectory ({exc.error_count()} problem(s), first: {loc}: {first['msg']})",
        )
        return None


def check_source(source: str) -> None:
    """Refuse a folder SOURCE that does not exist before anything is opened or written."""
    if source != KAFKA and not source.startswith("s3://") and not Path(source).is_dir():
        raise SourceError(
            f"{source}: no such folder (a SOURCE is a folder, s3://bucket/prefix, or {KAFKA})"
        )


async def read_trajectories(
    source: str, report: ReadReport, bootstrap: clients.Conn = None
) -> AsyncIterator[Trajectory]:
    """Every trajectory of `source`, in a stable order (object name; for kafka, partition and
    offset)."""
    if source == KAFKA:
        async for t in _from_kafka(bootstrap, report):
            yield t
        return
    check_source(source)
    async for t in _from_store(source, report):
        yield t


async def _from_store(source: str, report: ReadReport) -> AsyncIterator[Trajectory]:
    """A folder or an S3 prefix, read through connectors/sinks/stored.py (both sink layouts).
    A key written in two jsonl parts keeps the line with the latest finished_at."""
    from adp.connectors.sinks.stored import open_store, parse_documents

    store = open_store(source)
    try:
        try:
            entries = sorted(await store.entries(), key=lambda e: e.name)
        except Exception as exc:
            raise SourceError(f"cannot list {source}: {type(exc).__name__}: {exc}") from exc
        latest: dict[str, Trajectory] = {}
        for entry in entries:
            where = f"{store.location.rstrip('/')}/{entry.name}"
            try:
                docs = parse_documents(entry.name, await store.read(entry.name))
            except FileNotFoundError:  # removed since it was listed
                continue
            except ValueError as exc:
                report.skip(where, str(exc).split(": ", 1)[-1])
                continue
            for doc in docs:
                t = _parse(doc, where, report)
                if t is None:
                    continue
                if not entry.name.endswith(".jsonl"):
                    report.read += 1
                    yield t
                elif t.key not in latest or (
                    t.metadata.finished_at >= latest[t.key].metadata.finished_at
                ):
                    latest[t.key] = t
        for key in sorted(latest):
            report.read += 1
            yield latest[key]
    finally:
        await store.close()


async def _from_kafka(conf: clients.Conn, report: ReadReport) -> AsyncIterator[Trajectory]:
    """Two bounded passes over the same offset range, so memory follows the number of keys,
    not the topic's bytes: the first notes where each key's last record is (as compaction
    keeps it), the second decodes and yields only those records, in partition and offset
    order. A key whose last record is a tombstone was deleted: nothing is yielded for it."""
    try:
        parts = await topic_partitions(conf, TRAJECTORIES)
        consumer = await open_consumer(conf)
    except KafkaReadError as exc:
        raise SourceError(str(exc)) from exc
    chunks = ArtifactFetcher(conf)  # opens its consumer only if a record needs it
    try:
        rng = await capture_range(consumer, parts, since=None)
        last: dict[bytes, tuple[int, int]] = {}
        async for tp, records in batches_in_range(consumer, rng):
            for r in records:
                last[r.key or b""] = (tp.partition, r.offset)
        wanted = set(last.values())
        del last
        async for tp, records in batches_in_range(consumer, rng):
            for r in records:
                if (tp.partition, r.offset) not in wanted or r.value is None:
                    continue
                try:  # a record over the record limit points at its chunks (oversized.py)
                    t = codec.decode(await oversized.value_of(r, chunks.fetch), expect=Trajectory)
                except (codec.DecodeError, ValueError, ArtifactError) as exc:
                    report.skip(f"{r.topic}[{r.partition}]@{r.offset}", str(exc))
                    continue
                report.read += 1
                yield t
    except KafkaError as exc:
        raise SourceError(f"cannot read {TRAJECTORIES}: {type(exc).__name__}: {exc}") from exc
    finally:
        await consumer.stop()
        await chunks.close()


# ---- writing back -------------------------------------------------------------------------------


def describe_problems(report: ReadReport) -> list[str]:
    lines = [f"skipped {where}: {why}" for where, why in report.problems[:SHOWN_PROBLEMS]]
    if len(report.problems) > SHOWN_PROBLEMS:
        lines.append(f"... and {len(report.problems) - SHOWN_PROBLEMS} more")
    return lines
