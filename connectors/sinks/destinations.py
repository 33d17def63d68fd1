"""The one sink factory: which sink writes a destination.

A destination is a folder (the file sink), s3://bucket/prefix (the S3 sink) or `kafka` (a new
record on adp.trajectories under the trajectory's key: the compacted topic then holds it and the
aggregator's sink writes the file). The kind follows from the destination; a command that also
takes `--sink` passes it, and a kind that contradicts the destination is refused instead of,
say, writing to a local folder named "s3:".
"""

from __future__ import annotations

from pathlib import Path

from adp.connectors.sinks.base import BaseSink, SinkError
from adp.core.errors import BadInput
from adp.core.registry import Registry

KAFKA = "kafka"

SINKS = Registry(
    "sink",
    {
        "file": "adp.connectors.sinks.file:FileSink",
        "s3": "adp.connectors.sinks.s3:S3Sink",
        KAFKA: "adp.connectors.sinks.kafka:KafkaTrajectorySink",
    },
)


def kind_of(destination: str | Path) -> str:
    """The sink kind a destination names: kafka, s3 (s3://...) or file (a folder)."""
    text = str(destination)
    if text == KAFKA:
        return KAFKA
    if text.startswith("s3://"):
        return "s3"
    if "://" in text:
        raise BadInput(f"bad destination {text!r}: a folder, s3://bucket/prefix or {KAFKA}")
    return "file"


def sink_for(destination: str | Path, kind: str | None = None, conf: object = None) -> BaseSink:
    """The sink that writes `destination` (not checked yet). `kind`, when the user gave one,
    must agree with the destination; `conf` is the Kafka connection of the kafka sink."""
    inferred = kind_of(destination)
    if kind is not None and kind != inferred:
        raise BadInput(
            f"--sink {kind} cannot write {destination!s}: that is a {inferred} "
            f"destination (use --sink {inferred}, or a destination of its kind)"
        )
    cls = SINKS.load(inferred)
    try:
        return cls(conf) if inferred == KAFKA else cls(destination)
    except ValueError as exc:  # a malformed destination (s3:// without a bucket, ...)
        raise BadInput(f"bad destination {destination!s}: {exc}") from None


async def open_sink(
    destination: str | Path, kind: str | None = None, conf: object = None
) -> BaseSink:
    """sink_for(), checked: a folder that can be written, a bucket that answers. A destination
    that cannot be written raises SinkError (closed, nothing written)."""
    sink = sink_for(destination, kind, conf)
    try:
        await sink.check()
    except SinkError as exc:
        await sink.close()
        raise SinkError(f"bad destination {destination!s}: {exc}") from exc
    except BaseException:
        await sink.close()
        raise
    return sink
