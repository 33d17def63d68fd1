"""The python sandbox's contract, shared by every backend.

A Sandbox runs LLM-written Python and returns exactly what it printed (ExecResult), within
SandboxLimits. Backends (bwrap.py: bubblewrap, the default; docker.py: a Docker engine) are
chosen by name in __init__.make_sandbox and never import each other.
"""

from __future__ import annotations

import codecs
import signal
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
}


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 10  # RLIMIT_CPU
    memory_mb: int = 512  # RLIMIT_AS
    max_processes: int = 64  # fork-bomb containment (RLIMIT_NPROC in the run's own user ns)
    file_size_mb: int = 16  # RLIMIT_FSIZE
    wall_timeout: float = 30.0  # wall clock, kill the whole process tree
    output_limit: int = 10_000  # characters kept of stdout and of stderr each


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None  # None when we killed it; -N when a signal ended it (subprocess style)
    timed_out: bool
    truncated: bool
    duration: float
    notes: tuple[str, ...] = ()  # e.g. "[killed: output exceeded 64 MiB]"

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
        if self.exit_code not in (0, None):
            if self.exit_code < 0:
                parts.append(f"[killed by signal {_signame(-self.exit_code)}"
                             f"{_SIGNAL_HINT.get(-self.exit_code, '')}]")
            else:
                parts.append(f"[exit code {self.exit_code}]")
        out = ""
        for p in parts:
            out += p if not out or out.endswith("\n") else "\n" + p
        return out


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
    async def run_python(self, code: str, limits: SandboxLimits | None = None) -> ExecResult: ...


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
            t += ("" if t.endswith("\n") else "\n") + f"[output truncated: {self.dropped} more characters]"
        return t
