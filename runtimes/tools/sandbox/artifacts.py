"""Collecting the files a run wrote in its working directory (plots, CSVs, JSON, ...).

Before a run the sandbox takes a `snapshot` of the working directory; afterwards `collect`
lists every regular file that is new or changed, in name order, and keeps the bytes of each
within SandboxLimits (files per run, bytes per file, bytes per run). A file over a limit, or one
that cannot be read, is still listed with a note saying why: nothing is dropped silently.

The program is hostile by assumption, and every process of the run is dead when this runs:
- symlinks are never followed (a link to a host file would otherwise leak it): they are listed
  as not kept; so are FIFOs, sockets and devices (opening a FIFO would block);
- files are opened with O_NOFOLLOW | O_NONBLOCK and read only up to the limit;
- the walk stops after MAX_ENTRIES entries (a run may create a million files).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat

from adp.runtimes.tools.sandbox.base import CollectedFile, SandboxLimits

MAX_ENTRIES = 10_000
Snapshot = dict[str, tuple[int, int, int]]  # relative path -> (inode, size, mtime_ns)

# Types mimetypes does not know everywhere (it reads the host's /etc/mime.types).
_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".md": "text/markdown",
    ".parquet": "application/vnd.apache.parquet",
    ".npy": "application/octet-stream",
    ".pkl": "application/octet-stream",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".py": "text/x-python",
    ".png": "image/png",
    ".pdf": "application/pdf",
}


def media_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return (
        _TYPES.get(ext) or mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    )


def _walk(work: str) -> list[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry under `work`, symlinks not followed."""
    out: list[tuple[str, os.stat_result]] = []
    stack = [""]
    while stack and len(out) < MAX_ENTRIES:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(work, rel)))
        except OSError:
            continue
        for entry in entries:
            name = os.path.join(rel, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(name)
            else:
                out.append((name, st))
    return out


def snapshot(work: str) -> Snapshot:
    return {name: (st.st_ino, st.st_size, st.st_mtime_ns) for name, st in _walk(work)}


def collect(work: str, before: Snapshot, limits: SandboxLimits) -> list[CollectedFile]:
    changed = [
        (name, st)
        for name, st in _walk(work)
        if before.get(name) != (st.st_ino, st.st_size, st.st_mtime_ns)
    ]
    files: list[CollectedFile] = []
    kept = total = 0
    for name, st in sorted(changed):
        kind = media_type(name)
        if not stat.S_ISREG(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            files.append(CollectedFile(name, 0, kind, "", note=f"{what}: not kept"))
            continue
        size = st.st_size
        if size > limits.artifact_max_bytes:
            note = f"larger than the {_mib(limits.artifact_max_bytes)} per-file limit"
        elif kept >= limits.max_artifacts:
            note = f"over the limit of {limits.max_artifacts} files per run"
        elif total + size > limits.artifacts_max_bytes:
            note = f"over the {_mib(limits.artifacts_max_bytes)} limit for all files of a run"
        else:
            note = None
        data, digest, why = _read(os.path.join(work, name), None if note else size)
        if why is not None:
            files.append(CollectedFile(name, size, kind, digest, note=why))
        elif note is not None:
            files.append(CollectedFile(name, size, kind, digest, note=note))
        else:
            kept += 1
            total += len(data)
            files.append(CollectedFile(name, len(data), kind, digest, data=data))
    return files


def _read(path: str, keep_up_to: int | None) -> tuple[bytes | None, str, str | None]:
    """-> (bytes if keep_up_to is set, sha256 of the whole file, why it could not be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return None, "", f"unreadable: {exc.strerror}"
    digest, chunks, n = hashlib.sha256(), [], 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "", "not a regular file: not kept"
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
            n += len(chunk)
            if keep_up_to is not None:
                if n > keep_up_to:  # it grew after the stat: treat as over the limit
                    return None, "", "changed while being collected: not kept"
                chunks.append(chunk)
    except OSError as exc:
        return None, "", f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    return (b"".join(chunks) if keep_up_to is not None else None), digest.hexdigest(), None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"
