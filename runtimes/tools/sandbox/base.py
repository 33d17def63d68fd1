"""The python sandbox's contract, shared by every backend.

A Sandbox runs LLM-written Python and returns exactly what it printed (ExecResult), within
SandboxLimits. Backends (bwrap.py: bubblewrap, the default; docker.py: a Docker engine) are
chosen by name in __init__.make_sandbox and never import each other.
"""

from __future__ import annotations

import codecs
import signal
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MAX_DRAIN_BYTES = 64 << 20  # per stream; past this the run is killed (the text was cut long ago)

# The environment of the program: nothing of the runtime's (API keys never reach it).
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUNBUFFERED": "1",  # what was printed before a kill is still seen
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONPATH": "/work",  # modules the program writes into its cwd are importable
    "MPLBACKEND": "Agg",  # headless: plots are kept only by savefig
    "MPLCONFIGDIR": "/tmp/matplotlib",  # not in /work (it would look like an artifact)
    "XDG_CACHE_HOME": "/tmp/.cache",
    # one thread per BLAS/OpenMP pool: threads count against max_processes and the address
    # space limit, and a run's results do not depend on the host's core count
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 10  # RLIMIT_CPU
    memory_mb: int = 1024  # RLIMIT_AS (address space: importing pandas + scikit-learn + matplotlib
    # maps about 450 MiB before any data)
    max_processes: int = 64  # fork-bomb containment (RLIMIT_NPROC in the run's own user ns)
    file_size_mb: int = 16  # RLIMIT_FSIZE
    wall_timeout: float = 30.0  # wall clock, kill the whole process tree
    output_limit: int = 10_000  # characters kept of stdout and of stderr each
    # files a run writes in its working directory, kept as artifacts (artifacts.py)
    max_artifacts: int = 20  # files kept per run
    artifact_max_bytes: int = 8 << 20  # per file
    artifacts_max_bytes: int = 32 << 20  # all files of one run together


@dataclass(frozen=True)
class CollectedFile:
    """A file a run wrote (new or changed) in its working directory. `data` holds its bytes when
    it is kept; a file over a limit (or unreadable) is still listed, with `note` saying why."""

    name: str  # path relative to the working directory
    size: int
    media_type: str
    sha256: str  # "" when it could not be read
    data: bytes | None = None
    note: str | None = None

    @property
    def kept(self) -> bool:
        return self.data is not None


@dataclass
class Workspace:
    """The working directory of a series of runs (one attempt): /work inside every run.
    `root` is the host folder holding it, `work` the folder itself, `uid` the host uid its runs
    use (None unless the runtime is root). A backend may make the folder at the first run
    (bubblewrap does): until then `root` and `work` are empty."""

    root: str
    work: str
    uid: int | None = None


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None  # None when we killed it; -N when a signal ended it (subprocess style)
    timed_out: bool
    truncated: bool
    duration: float
    notes: tuple[str, ...] = ()  # e.g. "[killed: output exceeded 64 MiB]"
    files: tuple[CollectedFile, ...] = ()  # what it wrote in its working directory

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def observation(self) -> str:
        """What the LLM sees. A clean run with only stdout gives exactly the stdout."""
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout)
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr)
        parts.extend(self.notes)
        parts.extend(describe_files(self.files))
        if self.exit_code not in (0, None):
            if self.exit_code < 0:
                parts.append(
                    f"[killed by signal {_signame(-self.exit_code)}"
                    f"{_SIGNAL_HINT.get(-self.exit_code, '')}]"
                )
            else:
                parts.append(f"[exit code {self.exit_code}]")
        out = ""
        for p in parts:
            out += p if not out or out.endswith("\n") else "\n" + p
        return out


def describe_files(files: tuple[CollectedFile, ...]) -> list[str]:
    """The observation's lines about files: what was saved, and what was not kept and why."""
    kept = [f for f in files if f.kept]
    lines = []
    if kept:
        lines.append(
            "[saved files: "
            + ", ".join(f"{f.name} ({_size(f.size)}, {f.media_type})" for f in kept)
            + "]"
        )
    lines += [f"[not kept: {f.name} ({_size(f.size)}): {f.note}]" for f in files if not f.kept]
    return lines


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_SIGNAL_HINT = {
    signal.SIGXCPU: ": CPU time limit exceeded",
    signal.SIGXFSZ: ": file size limit exceeded",
}


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return str(n)


@runtime_checkable
class Sandbox(Protocol):
    """`run_python` runs one program; with a `workspace` (from `workspace()`, one per attempt) it
    runs in that working directory, so it sees what earlier runs of the attempt left there."""

    async def run_python(
        self, code: str, limits: SandboxLimits | None = None, workspace: Workspace | None = None
    ) -> ExecResult: ...

    def workspace(self) -> AbstractAsyncContextManager[Workspace]: ...


class Capture:
    """Keeps the first `limit` characters of a stream and counts the rest; memory stays bounded."""

    def __init__(self, limit: int):
        self.limit, self.kept, self.dropped, self.nbytes = limit, 0, 0, 0
        self.parts: list[str] = []
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes, final: bool = False) -> None:
        self.nbytes += len(data)
        s = self._dec.decode(data, final)
        room = self.limit - self.kept
        if room > 0 and s:
            head = s[:room]
            self.parts.append(head)
            self.kept += len(head)
            s = s[room:]
        self.dropped += len(s)

    def text(self) -> str:
        self.feed(b"", final=True)
        t = "".join(self.parts)
        if self.dropped:
            t += (
                "" if t.endswith("\n") else "\n"
            ) + f"[output truncated: {self.dropped} more characters]"
        return t
