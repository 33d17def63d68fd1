"""Sinks: where finished trajectories land. One rendering for all of them.

`render(trajectory)` gives the exact bytes of output/trajectories/<key>.json (the seed's
format, extended); the file sink, the S3 sink and `adp replay` all use it, so the same
trajectory is the same bytes everywhere. Keep it stable: changing it changes every file.

Which class writes a destination is decided in one place: connectors/sinks/destinations.py.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Awaitable, Callable, Sequence

import orjson

from adp.core.errors import BadInput
from adp.schemas.contracts import Artifact, Trajectory

# orjson writes the same bytes as json.dumps(indent=2, ensure_ascii=False) (about 30 times
# faster: the stdlib encoder has no C path with indent), except for floats with a negative
# exponent ("1e-7" where json writes "1e-07"); it refuses integers beyond 64 bits and lone
# surrogates. Those documents, rare in practice, go through json itself.
# Found by its literal part first: re then scans with a fast substring search (the pattern
# that starts with [0-9] tested every byte and cost more than the dump itself).
_EXPONENT_MINUS = re.compile(rb"e-[0-9]")


def _has_negative_exponent(out: bytes) -> bool:
    """Whether `out` has a digit, "e-", a digit (1e-7), inside a string or not."""
    return any(
        m.start() and out[m.start() - 1] in b"0123456789" for m in _EXPONENT_MINUS.finditer(out)
    )


def render(trajectory: Trajectory) -> bytes:
    """The file bytes of a trajectory: indented JSON, UTF-8, trailing newline (exactly
    json.dumps(doc, indent=2, ensure_ascii=False) + newline)."""
    doc = trajectory.as_json()
    try:
        out = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):
        out = None
    if out is None or _has_negative_exponent(out):
        out = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return out


def object_name(trajectory: Trajectory) -> str:
    """The file / object name of a trajectory inside its destination: <task_id>.json, and
    <task_id>/<i>.json for sample i > 0 of a task run k times (the trajectory's key + .json)."""
    return f"{trajectory.key}.json"


class SinkError(BadInput):
    """The destination cannot be written (a folder that cannot be made, a bucket that does not
    exist or refuses us); the message names it and says why. A bad destination is bad input:
    exit code 1, as a bad --out always was."""


def artifact_name(trajectory: Trajectory, step_id: int, artifact: Artifact) -> str:
    """Where a file a step wrote goes, beside the trajectory: <key>/step-<n>/<name>, i.e.
    <task_id>/step-<n>/<name>, or <task_id>/<i>/step-<n>/<name> for sample i > 0 of a task run
    k times (a file saved again by a later step is kept once per step)."""
    parts = artifact.name.split("/")
    if artifact.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"artifact name {artifact.name!r} is not a plain relative path")
    return f"{trajectory.key}/step-{step_id}/{artifact.name}"


_STEP_FOLDER = re.compile(r"step-[0-9]+")


def is_artifact_name(name: str) -> bool:
    """Whether a stored name is a step's file in artifact_name's layout (<key>/step-<n>/...)
    rather than a trajectory (<task_id>.json, <task_id>/<i>.json): readers of a destination
    tell the two apart with it."""
    parts = name.split("/")
    return any(_STEP_FOLDER.fullmatch(p) for p in parts[1:-1])


class BaseSink(abc.ABC):
    """Writes trajectories somewhere durable; writing the same trajectory again is harmless
    (idempotent: same name, same bytes). A caller that acknowledges its input (commits
    offsets) calls `flush()` first: only then is every write so far stored (a layout that
    buffers, like S3 jsonl-hourly, stores its buffer there)."""

    kind: str = "base"

    @abc.abstractmethod
    async def write(self, trajectory: Trajectory) -> str:
        """Write one trajectory atomically; returns where it goes (path or URL)."""

    async def write_batch(self, trajectories: Sequence[Trajectory]) -> list[str]:
        """Write several trajectories (in order: a later one of the same task_id wins).
        Sinks that can do better than one write after the other override it."""
        return [await self.write(t) for t in trajectories]

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Store everything written so far durably (no-op for sinks that store on write)."""

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Raise SinkError if the destination cannot be written (before any work starts)."""

    async def write_artifact(
        self, trajectory: Trajectory, step_id: int, artifact: Artifact, data: bytes
    ) -> str:
        """Store the bytes of a file a step wrote, at artifact_name(), before the trajectory
        itself is written; returns where it went."""
        raise NotImplementedError(f"{type(self).__name__} does not store artifacts")

    async def store(
        self,
        trajectories: Sequence[Trajectory],
        fetch: Callable[[Artifact], Awaitable[bytes]] | None = None,
    ) -> list[str]:
        """The one order every writer keeps: the bytes of each kept file a step wrote (read with
        `fetch`, e.g. from adp.artifacts), then the trajectories themselves, so a reader who
        finds a trajectory finds its files. Returns where the trajectories went."""
        if fetch is not None:
            for trajectory in trajectories:
                for step in trajectory.steps:
                    for artifact in step.artifacts:
                        if artifact.kept and artifact.location is not None:
                            await self.write_artifact(
                                trajectory, step.step_id, artifact, await fetch(artifact)
                            )
        return await self.write_batch(trajectories)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Safe to call twice."""

    async def __aenter__(self) -> BaseSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
