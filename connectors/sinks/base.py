"""Sinks: where finished trajectories land. One rendering for all of them.

`render(trajectory)` gives the exact bytes of output/trajectories/<task_id>.json (the seed's
format, extended); the file sink, the S3 sink and `adp replay` all use it, so the same
trajectory is the same bytes everywhere. Keep it stable: changing it changes every file.

`make_sink(kind, destination)` is the one place that maps `--sink file|s3` to a class.
"""

from __future__ import annotations

import abc
import importlib
import json
from pathlib import Path

from adp.schemas.contracts import Trajectory


def render(trajectory: Trajectory) -> bytes:
    """The file bytes of a trajectory: indented JSON, UTF-8, trailing newline."""
    return (json.dumps(trajectory.model_dump(mode="json"), indent=2, ensure_ascii=False)
            + "\n").encode("utf-8")


def object_name(trajectory: Trajectory) -> str:
    """The file / object name of a trajectory inside its destination."""
    return f"{trajectory.task_id}.json"


class BaseSink(abc.ABC):
    """Writes trajectories somewhere durable. `write` returns only once the trajectory is
    stored (so the caller may commit its offset); writing the same trajectory again is harmless
    (idempotent: same name, same bytes)."""

    kind: str = "base"

    @abc.abstractmethod
    async def write(self, trajectory: Trajectory) -> str:
        """Store one trajectory atomically; returns where it went (path or URL)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Safe to call twice."""

    async def __aenter__(self) -> "BaseSink":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# kind -> "module:Class". The S3 sink (connectors/sinks/s3.py) takes an s3://bucket/prefix
# destination; it is imported only when asked for.
SINKS = {
    "file": "adp.connectors.sinks.file:FileSink",
    "s3": "adp.connectors.sinks.s3:S3Sink",
}


def make_sink(kind: str, destination: str | Path) -> BaseSink:
    """A sink of the given kind writing to `destination` (a folder for file, s3://... for s3)."""
    target = SINKS.get(kind)
    if target is None:
        raise ValueError(f"unknown sink {kind!r} (known: {', '.join(sorted(SINKS))})")
    module, name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"sink {kind!r} is unavailable: {exc}") from exc
    return cls(destination)
