"""Managing a detached local server process: pid file, log file, start in a new session, wait
until it is ready, stop it (SIGTERM, then SIGKILL after a grace period). Used by `adp llm`;
generic enough for any long-running helper (a broker, a model server). Also how this process
itself runs: the collector's pace for stream processors (`relax_gc`), the shutdown insurance
(`exit_if_stuck`)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adp.core.errors import AdpError


class ProcessError(AdpError):
    pass


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    """True if pid runs and is not a zombie (a zombie child of ours is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def describe_exit(returncode: int | None) -> str:
    """'exit status 1', 'killed by SIGKILL', or '' when unknown (not our child)."""
    if returncode is None:
        return ""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class ManagedProcess:
    """One detached process known by its pid file.

    `marker`, if set, must appear in /proc/<pid>/cmdline for a pid from the file to count as
    ours (guards against a stale pid file whose pid was reused)."""

    name: str
    argv: Sequence[str]
    pid_file: Path
    log_file: Path
    ready: Callable[[], bool] | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    marker: str | None = None
    poll: float = 0.2
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def pid(self) -> int | None:
        """The running process's pid, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._alive(pid) and self._is_ours(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _alive(self, pid: int) -> bool:
        # our own child: ask its Popen, which keeps the exit status (pid_alive would reap it
        # and throw the status away)
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return pid_alive(pid)

    def exit_description(self) -> str:
        """How the process this object started ended ('exit status 1', 'killed by SIGKILL'),
        or '' if it runs, was not started here, or its status is unknown."""
        return describe_exit(self._proc.poll()) if self._proc is not None else ""

    def _is_ours(self, pid: int) -> bool:
        if not self.marker:
            return True
        if self._proc is not None and self._proc.pid == pid:
            return True  # the child this object started; the marker is for pid files of others
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc: trust the pid file
        if not cmdline:
            # A live process shows no arguments while it execs: Linux closes the exec'ing
            # child's close-on-exec pipe (which is when Popen returns) before it sets up the
            # new program's arguments, and a launcher may exec again. Read then, the pid of a
            # broker just started looked like a stranger's: its pid file was removed and the
            # node reported as exited (CI, twice).
            return True
        return self.marker in cmdline.replace(b"\0", b" ").decode(errors="replace")

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 120.0) -> tuple[int, bool]:
        """Start detached unless already running; wait until ready. Returns (pid, started)."""
        pid = self.pid()
        if pid is not None:
            return pid, False
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
                close_fds=True,
            )
        pid = self._proc.pid
        self.pid_file.write_text(f"{pid}\n")
        self.wait_ready(pid, timeout)
        return pid, True

    def wait_ready(self, pid: int, timeout: float) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            if self.ready():
                return
            if not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                how = self.exit_description()
                raise ProcessError(
                    f"{self.name} exited during startup{f' ({how})' if how else ''}"
                    f"; see {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessError(
                    f"{self.name} was not ready after {timeout:g}s and was stopped; "
                    f"see {self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(self.poll)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `grace` seconds. Returns the pid stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive(pid):
            self._signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return pid

    def send(self, sig: int) -> None:
        """Signal the running process (and its session's group), if any; returns at once."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, sig)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            if os.getpgid(pid) == pid:  # started with start_new_session: take its children too
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass


def relax_gc() -> None:
    """For a process that decodes records all day (the aggregator, replay): move what exists
    at start-up (modules, Faust's app, the assembler's recovered state) out of the collector's
    sight, so its full collections stop walking them again and again. The collector's pace is
    left as it is: collecting the youngest generation every 50,000 allocations instead of 700
    made the aggregator a few percent faster, but let Faust's cyclic per-event garbage pile up:
    its RSS grew to 1.56 times what it was at a quarter of the tasks, against 0.83 at the
    default pace (bench/parts/g_memory.py measures it)."""
    import gc

    gc.collect()
    gc.freeze()


def exit_if_stuck(seconds: float, what: str, code: int | Callable[[], int] = 1) -> threading.Timer:
    """Shutdown insurance, armed when a stop signal arrives: a daemon timer that ends the
    process if it has not exited `seconds` later (a library still waiting for a broker that is
    gone), with exit status `code` (or what it returns then). Safe for the platform's
    components: they commit only finished work, so whatever was not committed is redone at the
    next start, as after a kill -9."""

    def expire() -> None:
        logging.getLogger("adp").error(
            "%s did not stop within %.0fs of the stop signal (is the broker unreachable?); "
            "exiting now: work not committed is redone at the next start",
            what,
            seconds,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(code() if callable(code) else code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


class ChildProcesses:
    """Foreground children of one command (the demo, the load test), each with its own log
    file; `check()` fails fast with the log's tail when one died; stopped in reverse order."""

    def __init__(self, log_dir: Path, env: dict[str, str], prefix: str = ""):
        self.log_dir, self.env, self.prefix = log_dir, env, prefix
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log_path = self.log_dir / f"{self.prefix}{name}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.procs.append((name, proc, log_path))
        return proc

    def check(self) -> None:
        for name, proc, log_path in self.procs:
            if proc.poll() is not None:
                raise ProcessError(
                    f"{name} exited with code {proc.returncode}; last lines of "
                    f"{log_path}:\n{tail(log_path, 15)}"
                )

    def stop(self, grace: float = 40.0) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def watch_children_with_pidfd() -> bool:
    """On Python 3.11 asyncio waits for each child process (sandbox runs, browsers) with a
    thread blocked in waitpid (ThreadedChildWatcher): a runtime at concurrency 64 ran a thread
    per sandbox run. A pidfd watcher (Linux >= 5.3) waits on the event loop instead; Python
    3.12 does this by default. Call inside the running loop, before the first child starts.
    Returns whether it was installed."""
    import asyncio
    import sys

    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel without pidfd, or refused by a seccomp filter
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return True
