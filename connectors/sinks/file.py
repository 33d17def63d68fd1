"""File sink: <out_dir>/<task_id>.json (and the files its steps wrote in <out_dir>/<task_id>/),
written atomically (temp file in the same folder, fsync,
os.replace, fsync of the folder), so a reader never sees half a file and a crash leaves either
the old file or the new one. Rewriting the same trajectory is harmless (same bytes).

`write_batch` writes many files with the same guarantees without paying one disk flush per file
in a row: every temp file is written first, then all are fsynced at once (in parallel threads,
so the file system commits them together), renamed into place, and each folder is fsynced once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from adp.connectors.sinks.base import BaseSink, SinkError, artifact_name, object_name, render
from adp.core.metrics import SINK_WRITES
from adp.schemas.contracts import Artifact, Trajectory

FSYNC_THREADS = 32
_fsync_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _fsync_pool
    if _fsync_pool is None:
        _fsync_pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="file-sink-fsync")
    return _fsync_pool


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    write_many_atomic([(path, data)])


def write_many_atomic(items: Sequence[tuple[Path, bytes]]) -> None:
    """Replace each path with its bytes, atomically and durably (a later item for the same
    path wins). Either every file is in place when this returns, or it raises."""
    temps: list[tuple[int, str, Path]] = []
    try:
        for path, data in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((fd, tmp, path))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)
        if len(temps) == 1:
            os.fsync(temps[0][0])
        else:  # one flush of the journal for all of them, not one per file in a row
            list(_pool().map(os.fsync, [fd for fd, _, _ in temps]))
        for fd, _, _ in temps:
            os.close(fd)
        for _, tmp, path in temps:
            os.replace(tmp, path)
        temps_done, temps = temps, []
        for folder in {path.parent for _, _, path in temps_done}:
            _fsync_dir(folder)
    finally:
        for fd, tmp, _ in temps:  # only after a failure
            try:
                os.close(fd)
            except OSError:
                pass
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


class FileSink(BaseSink):
    kind = "file"

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def path_for(self, trajectory: Trajectory) -> Path:
        return self.out_dir / object_name(trajectory)

    async def write(self, trajectory: Trajectory) -> str:
        return (await self.write_batch([trajectory]))[0]

    async def write_batch(self, trajectories: Sequence[Trajectory]) -> list[str]:
        if not trajectories:
            return []
        paths = [self.path_for(t) for t in trajectories]
        try:
            await asyncio.to_thread(
                lambda: write_many_atomic([(p, render(t)) for p, t in zip(paths, trajectories)])
            )
        except OSError:
            SINK_WRITES.labels(self.kind, "error").inc(len(trajectories))
            raise
        SINK_WRITES.labels(self.kind, "ok").inc(len(trajectories))
        return [str(p) for p in paths]

    async def check(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create the folder: {exc.strerror or exc}") from exc
        if not os.access(self.out_dir, os.W_OK | os.X_OK):
            raise SinkError("the folder is not writable")

    async def write_artifact(
        self, trajectory: Trajectory, step_id: int, artifact: Artifact, data: bytes
    ) -> str:
        path = self.out_dir / artifact_name(trajectory, step_id, artifact)
        await asyncio.to_thread(write_atomic, path, data)
        return str(path)

    def __repr__(self) -> str:
        return f"FileSink({str(self.out_dir)!r})"
