"""The bubblewrap backend of the python sandbox (Debian package `bubblewrap`), the default.

This module prepares a run's folder, starts it, drains its output, enforces the wall-clock
timeout and cleans up; bwrap_argv.py builds the command line. Each run gets
- its own user, pid, net, ipc, uts and cgroup namespaces; no network at all (only a loopback
  of its own), no nested user namespaces (--disable-userns);
- a read-only view of /usr (plus the /bin, /lib, /lib64, /sbin symlinks of a merged-/usr
  system) and a tiny synthetic /etc; fresh /proc, /dev, and size-capped tmpfs /tmp, /dev/shm;
- a private host temp dir bind-mounted read-write as the cwd /work: empty for a lone run, or
  the Workspace of an attempt, shared by its runs so later steps see earlier files (deleted
  with the workspace); the code itself is a read-only /code/main.py, so tracebacks show source
  lines; the files a run wrote there are collected afterwards (artifacts.py);
- the sandbox's own Python environment (env.py: the scientific stack in a venv of Debian's
  python3) mounted read-only at /env, its interpreter exec'd for the program;
- an empty environment (the runtime's API keys never reach the sandbox, not even through the
  environ of bwrap's own pid 1);
- rlimits on CPU time, address space, processes and file size, set right before the program
  is exec'd by util-linux's prlimit (a small C program: one interpreter start per run, not two),
  or by a tiny Python launcher where prlimit is missing;
- a wall-clock timeout after which the whole tree dies (SIGKILL to bwrap; its pid 1 has
  PR_SET_PDEATHSIG, and the death of a pid namespace's init kills everything in it).

Fork bombs: as root, RLIMIT_NPROC is ignored (the kernel exempts uid 0), so when the runtime runs
as root each run is started as its own unused, unprivileged uid (bwrap then creates its user
namespace unprivileged). RLIMIT_NPROC is accounted per user namespace (Linux >= 5.14 ucounts), so
max_processes bounds one run's tasks, and each run has a separate budget. As that uid is used by
nothing else, a killed run is also swept by uid until none of its processes is left.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adp.core.errors import DependencyOutage, DependencyUnavailable
from adp.core.settings import settings
from adp.runtimes.tools.sandbox.artifacts import collect, snapshot
from adp.runtimes.tools.sandbox.base import (
    MAX_DRAIN_BYTES,
    Capture,
    ExecResult,
    SandboxLimits,
    Workspace,
)
from adp.runtimes.tools.sandbox.bwrap_argv import (
    ETC_FILES,
    MPL_DIR,
    PYTHON,
    bwrap_argv,
    have_prlimit,
)
from adp.runtimes.tools.sandbox.env import SandboxEnv, ensure_env

SETPRIV = "/usr/bin/setpriv"  # util-linux too; becomes the run's uid, then execs bwrap
_UID_BASE, _UID_SPAN = 1_500_000_000, 1 << 24  # host uids for runs when we are root
_CHUNK = 1 << 16


def _as_uid(argv: list[str], uid: int | None) -> tuple[list[str], dict]:
    """argv and Popen keywords that start `argv` as `uid` (None: as we are). Popen's own
    user/group switch rules out vfork (CPython <= 3.11), so the whole runtime process was forked
    for every run: ~60 ms on the event loop thread for a 500 MB process, against ~5 ms for a
    vfork that execs setpriv, which switches to the uid and execs bwrap (same pid)."""
    if uid is None:
        return argv, {}
    if os.access(SETPRIV, os.X_OK):
        return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv], {}
    return argv, dict(user=uid, group=uid, extra_groups=[])


def _uids_alive(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"State:") and line.split()[1] == b"Z":
                            break  # a zombie holds nothing; its parent reaps it
                        if line.startswith(b"Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(name))
                            break
            except (OSError, ValueError, IndexError):
                pass
    return pids


class BubblewrapSandbox:
    """The default sandbox. `tmp_root` is where per-run dirs are made (default: the temp dir).
    `env`: the Python environment of the programs ("auto": the one of env.py, built if missing;
    None: Debian's bare python3). `bwrap`: the executable (default: settings().sandbox.bwrap)."""

    def __init__(
        self,
        tmp_root: str | None = None,
        env: SandboxEnv | str | None = "auto",
        bwrap: str | None = None,
    ):
        self.bwrap = bwrap or settings().sandbox.bwrap
        if not os.access(self.bwrap, os.X_OK):
            raise DependencyUnavailable(
                f"bubblewrap not found at {self.bwrap} (sandbox.bwrap, ADP_SANDBOX_BWRAP): "
                "install it (apt-get install bubblewrap)"
            )
        self.tmp_root = tmp_root
        self.env = ensure_env() if env == "auto" else env
        self._as_root = os.geteuid() == 0
        self._uids_in_use: set[int] = set()
        if self._as_root:  # bwrap runs as an unprivileged uid: it must be able to reach the dir
            p = os.path.realpath(tmp_root or tempfile.gettempdir())
            while True:
                if not os.stat(p).st_mode & 0o001:
                    raise ValueError(
                        f"sandbox tmp_root {tmp_root or p!r}: {p} is not searchable by other "
                        "users (o+x), but the sandbox runs as an unprivileged uid that must "
                        "reach its per-run dir there; pick a dir such as /tmp/<name> (0711)"
                    )
                if p == "/":
                    break
                p = os.path.dirname(p)

    def _alloc_uid(self) -> int | None:
        if not self._as_root:
            return None
        while True:
            uid = _UID_BASE + random.randrange(_UID_SPAN)
            if uid not in self._uids_in_use:
                self._uids_in_use.add(uid)
                return uid

    def _prepare(self, uid: int | None) -> str:
        root = tempfile.mkdtemp(prefix="adp-sbx-", dir=self.tmp_root)
        for d in ("etc", "code", "work"):
            os.mkdir(os.path.join(root, d), 0o755 if d != "work" else 0o700)
        for name, text in ETC_FILES.items():
            with open(os.path.join(root, "etc", name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(root, "etc", name), 0o644)
        mplconfig = self.env.mplconfig if self.env is not None else None
        if mplconfig is not None and have_prlimit():
            # the run's matplotlib config dir, seeded here once per workspace rather than by
            # the Python launcher inside every run
            mpl = os.path.join(root, MPL_DIR)
            os.mkdir(mpl, 0o700)
            for f in mplconfig.iterdir():
                shutil.copyfile(f, os.path.join(mpl, f.name))
            if uid is not None:
                os.chown(mpl, uid, uid)
                for f in os.listdir(mpl):
                    os.chown(os.path.join(mpl, f), uid, uid)
        if uid is not None:  # bwrap runs as `uid`: it must reach root/, and own the workdir
            os.chown(root, uid, uid)
            os.chown(os.path.join(root, "work"), uid, uid)
        return root

    @staticmethod
    def _write_code(root: str, code: str) -> None:
        path = os.path.join(root, "code", "main.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(path, 0o644)

    @asynccontextmanager
    async def workspace(self) -> AsyncIterator[Workspace]:
        """One working directory for a series of runs (an attempt): each run sees the files the
        earlier ones left in /work. Runs of one workspace must not overlap.

        The directory is made at the first run (an attempt that runs no code touches no disk),
        and made and removed in a worker thread: at concurrency 64 this file work, done on the
        event loop thread, took a fifth of a runtime's time and held up every other attempt."""
        uid = self._alloc_uid()
        ws = Workspace("", "", uid)
        try:
            yield ws
        finally:
            if ws.root:  # shielded: a cancelled attempt still leaves nothing behind
                await asyncio.shield(asyncio.to_thread(self._remove, ws))
            if uid is not None:
                self._uids_in_use.discard(uid)

    async def _ensure(self, ws: Workspace) -> None:
        if not ws.root:
            ws.root = await asyncio.to_thread(self._prepare, ws.uid)
            ws.work = os.path.join(ws.root, "work")

    @staticmethod
    def _remove(ws: Workspace) -> None:
        # No sweep of the uid here: a run that ended by itself took its pid namespace with it
        # (the kernel kills everything in it when its init exits), and a run we killed or that
        # was cancelled was swept by its _Run. Scanning /proc per workspace cost ~5 ms of CPU.
        _rmtree(ws.root, fix_modes=ws.uid is None)

    async def run_python(
        self, code: str, limits: SandboxLimits | None = None, workspace: Workspace | None = None
    ) -> ExecResult:
        limits = limits or SandboxLimits()
        if workspace is None:  # a lone run: a workspace of its own, gone afterwards
            async with self.workspace() as ws:
                return await self._run(code, limits, ws)
        return await self._run(code, limits, workspace)

    async def _run(self, code: str, limits: SandboxLimits, ws: Workspace) -> ExecResult:
        run = _Run(limits, ws.uid)
        try:
            try:
                await self._ensure(ws)
                self._write_code(ws.root, code)  # one small file: not worth a thread
                before = snapshot(ws.work)
                argv = bwrap_argv(ws.root, limits, self.env, self.bwrap)
                await run.start(*_as_uid(argv, ws.uid))
            except OSError as exc:  # no disk, no memory, no bwrap: the program never ran
                raise self._outage(f"{type(exc).__name__}: {exc}") from exc
            await run.finish()
            if _never_ran(run):
                raise self._outage(run.err.text().strip().splitlines()[0])
            files = await asyncio.to_thread(collect, ws.work, before, limits)
            return run.result(files)
        finally:
            run.abandon()

    def _outage(self, why: str) -> DependencyOutage:
        return DependencyOutage(f"the python sandbox cannot start: {why}", "sandbox", self._probe)

    async def _probe(self) -> None:
        """Return once a sandbox starts again here; raise while it does not."""
        reason = await asyncio.to_thread(_probe_bwrap, self.bwrap)
        if reason is not None:
            raise self._outage(reason)


class _Run:
    """One program running in bubblewrap: its process, the output captured so far, and why we
    killed it, if we did."""

    def __init__(self, limits: SandboxLimits, uid: int | None) -> None:
        self.limits = limits
        self.uid = uid
        self.out, self.err = Capture(limits.output_limit), Capture(limits.output_limit)
        self.notes: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.main: asyncio.Future | None = None
        self.timed_out = False
        self.duration = 0.0
        self.t0 = 0.0

    async def start(self, argv: list[str], kw: dict) -> None:
        self.t0 = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            start_new_session=True,
            close_fds=True,
            **kw,
        )
        self.main = asyncio.ensure_future(self._communicate())

    async def _communicate(self) -> None:
        proc = self.proc
        await asyncio.gather(self._pump(proc.stdout, self.out), self._pump(proc.stderr, self.err))
        await proc.wait()

    async def _pump(self, stream: asyncio.StreamReader, cap: Capture) -> None:
        while data := await stream.read(_CHUNK):
            cap.feed(data)
            if cap.nbytes > MAX_DRAIN_BYTES and not self.notes:
                self.notes.append(f"[killed: output exceeded {MAX_DRAIN_BYTES >> 20} MiB]")
                _killpg(self.proc.pid)

    async def finish(self) -> None:
        """Wait for the program until the wall-clock timeout, then kill it; returns once its
        output is drained and, if we killed it, nothing of the run is left."""
        done, _ = await asyncio.wait({self.main}, timeout=self.limits.wall_timeout)
        self.duration = time.monotonic() - self.t0
        self.timed_out = not done
        if self.timed_out:
            self.notes.append(f"[killed: wall-clock timeout after {self.limits.wall_timeout:g}s]")
            _killpg(self.proc.pid)
        if self.notes and self.uid is not None:
            await asyncio.to_thread(_sweep_uid, self.uid)
        await asyncio.wait_for(self.main, 30)  # EOF comes as soon as the tree is dead

    def exit_code(self) -> int | None:
        rc = self.proc.returncode
        if self.timed_out:
            return None
        if rc is not None and 128 < rc < 128 + 65:  # bwrap reports a signal death so
            return -(rc - 128)
        return rc  # negative if bwrap itself was killed (output cap)

    def result(self, files: list) -> ExecResult:
        return ExecResult(
            stdout=self.out.text(),
            stderr=self.err.text(),
            exit_code=self.exit_code(),
            timed_out=self.timed_out,
            truncated=bool(self.out.dropped or self.err.dropped),
            duration=self.duration,
            notes=tuple(self.notes),
            files=tuple(files),
        )

    def abandon(self) -> None:
        """After the run, or when it was cancelled or failed midway: nothing of it stays."""
        if self.main is not None and not self.main.done():
            self.main.cancel()
        if self.proc is not None and self.proc.returncode is None:
            _killpg(self.proc.pid)
            if self.uid is not None:
                _sweep_uid(self.uid)


def _never_ran(run: _Run) -> bool:
    """Did bubblewrap (or setpriv, which becomes the run's uid before it) fail to set the
    sandbox up, so that the program never ran? They say so on stderr, prefixed with their name,
    and exit 1 (126/127: setpriv could not execute bubblewrap)."""
    err = run.err.text()
    return (
        run.proc.returncode in (1, 126, 127)
        and not run.out.nbytes
        and err.startswith(("bwrap: ", "setpriv: "))
    )


def _sweep_uid(uid: int, deadline_s: float = 5.0) -> None:
    """SIGKILL every process of the run's private uid until none is left."""
    end = time.monotonic() + deadline_s
    while (pids := _uids_alive(uid)) and time.monotonic() < end:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)


def _rmtree(root: str, fix_modes: bool) -> None:
    """Remove a run's dir. Not as root, a dir the program made mode 0 would block the removal,
    so dirs are made writable first (never through a symlink: the program may have planted one;
    every process of the run is dead by now, so nothing can swap one in)."""
    if fix_modes:
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    try:
                        os.chmod(p, 0o700)
                    except OSError:
                        pass
    shutil.rmtree(root, ignore_errors=True)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


_available: dict[str, str | None] = {}


def sandbox_available() -> str | None:
    """None if the bubblewrap sandbox really works here, else why not (cached per process)."""
    if "bwrap" not in _available:
        _available["bwrap"] = _probe_bwrap()
    return _available["bwrap"]


def _probe_bwrap(bwrap: str | None = None) -> str | None:
    bwrap = bwrap or settings().sandbox.bwrap
    if not os.path.exists(bwrap):
        return f"{bwrap} not found: install bubblewrap (apt-get install bubblewrap)"
    if not os.path.exists(PYTHON):
        return f"{PYTHON} not found: install python3 (apt-get install python3)"
    try:
        sb = BubblewrapSandbox(env=None, bwrap=bwrap)
    except (ValueError, DependencyUnavailable) as e:
        return str(e)
    uid = sb._alloc_uid()
    root = sb._prepare(uid)
    sb._write_code(root, "print('ok')")
    argv, kw = _as_uid(bwrap_argv(root, SandboxLimits(), bwrap=bwrap), uid)
    try:
        r = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={},
            timeout=30,
            start_new_session=True,
            **kw,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run bubblewrap: {e}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if r.returncode != 0 or r.stdout != b"ok\n":
        why = r.stderr.decode(errors="replace").strip()[:500]
        return (
            "bubblewrap cannot create an unprivileged sandbox here (are user namespaces "
            f"disabled or restricted?): exit {r.returncode}: {why}"
        )
    return None
