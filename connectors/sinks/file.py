"""File sink: <out_dir>/<task_id>.json, written atomically (temp file in the same folder, fsync,
os.replace, fsync of the folder), so a reader never sees half a file and a crash leaves either
the old file or the new one. Rewriting the same trajectory is harmless (same bytes)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from adp.schemas.contracts import Trajectory
from adp.core.metrics import SINK_WRITES
from adp.connectors.sinks.base import BaseSink, object_name, render


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileSink(BaseSink):
    kind = "file"

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def path_for(self, trajectory: Trajectory) -> Path:
        return self.out_dir / object_name(trajectory)

    async def write(self, trajectory: Trajectory) -> str:
        path = self.path_for(trajectory)
        try:
            await asyncio.to_thread(write_atomic, path, render(trajectory))
        except OSError:
            SINK_WRITES.labels(self.kind, "error").inc()
            raise
        SINK_WRITES.labels(self.kind, "ok").inc()
        return str(path)

    def __repr__(self) -> str:
        return f"FileSink({str(self.out_dir)!r})"
