"""The bubblewrap command line of one sandboxed run, and the files its /etc shows.

bwrap.py prepares a run's folder (ETC_FILES under etc/, the program as code/main.py, the
working folder work/, the seeded matplotlib config mpl/) and starts what `bwrap_argv` returns:
bubblewrap with its namespaces, a read-only view of the host's /usr and a synthetic /etc, the
run's own folders, the environment variables, then the program under its rlimits (set by
util-linux's prlimit, else by a tiny Python launcher inside the sandbox).
"""

from __future__ import annotations

import functools
import os
import subprocess

from adp.runtimes.tools.sandbox.base import ENV, SandboxLimits
from adp.runtimes.tools.sandbox.env import MOUNT, MPLCONFIG, SandboxEnv

BWRAP = "/usr/bin/bwrap"  # the default of settings().sandbox.bwrap (ADP_SANDBOX_BWRAP)
PYTHON = "/usr/bin/python3"  # Debian's interpreter, never the runtime's venv
PRLIMIT = "/usr/bin/prlimit"  # util-linux (Debian: required); sets rlimits, then execs
MPL_DIR = "mpl"  # per-workspace matplotlib config dir (seeded with the env's font cache)
INNER_UID = 1000  # what the program sees as its uid/gid

# Runs inside the sandbox: seed matplotlib's private config dir with the environment's font
# cache (argv[5], "-" for none), set the rlimits, then become the program.
LAUNCHER = """\
import os, resource as r, sys
cpu, mem, nproc, fsize = (int(a) for a in sys.argv[1:5])
if sys.argv[5] != "-":
    dst = os.environ["MPLCONFIGDIR"]
    os.mkdir(dst)
    for name in os.listdir(sys.argv[5]):
        src, out = os.path.join(sys.argv[5], name), os.path.join(dst, name)
        with open(src, "rb") as f, open(out, "wb") as g:
            g.write(f.read())
r.setrlimit(r.RLIMIT_CPU, (cpu, cpu + 1))
limits = ((r.RLIMIT_AS, mem), (r.RLIMIT_NPROC, nproc), (r.RLIMIT_FSIZE, fsize), (r.RLIMIT_CORE, 0))
for k, v in limits:
    r.setrlimit(k, (v, v))
os.execv(sys.argv[6], sys.argv[6:])
"""

# The sandbox's whole /etc beyond a few harmless host files (HOST_ETC): the program's user,
# and name lookups that never leave the sandbox.
ETC_FILES = {
    "passwd": f"root:x:0:0::/:/bin/sh\nsandbox:x:{INNER_UID}:{INNER_UID}::/work:/bin/sh\n"
    "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nsandbox:x:{INNER_UID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}
HOST_ETC = ("localtime", "ld.so.cache", "ld.so.conf", "mime.types")
# the top-level folders of /usr's layout: symlinks into /usr on a merged-/usr system
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@functools.cache
def _disable_userns(bwrap: str = BWRAP) -> tuple[str, ...]:
    """--disable-userns (bwrap >= 0.8) where this bwrap knows it. Without it a program may make
    nested user namespaces; RLIMIT_NPROC still holds, as the kernel counts them hierarchically."""
    try:
        help_text = subprocess.run([bwrap, "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return ("--disable-userns",) if b"--disable-userns" in help_text else ()


@functools.cache
def have_prlimit() -> bool:
    return os.access(PRLIMIT, os.X_OK)


def bwrap_argv(
    root: str, limits: SandboxLimits, env: SandboxEnv | None = None, bwrap: str = BWRAP
) -> list[str]:
    """The command that runs root/code/main.py in a sandbox (root: the run's folder), with the
    bubblewrap executable `bwrap`."""
    seeded = env is not None and env.mplconfig is not None and os.path.isdir(f"{root}/{MPL_DIR}")
    argv = [
        bwrap,
        *_namespaces(bwrap),
        *_system_mounts(limits),
        *_run_mounts(root, env, seeded),
        "--remount-ro",
        "/",
        "--chdir",
        "/work",
    ]
    for k, v in ENV.items():
        argv += ["--setenv", k, v]
    return [*argv, "--", *_program(limits, env, seeded)]


def _namespaces(bwrap: str) -> list[str]:
    """Every namespace of its own, as an unprivileged user with a fixed uid, no environment."""
    return [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *_disable_userns(bwrap),
        "--uid",
        str(INNER_UID),
        "--gid",
        str(INNER_UID),
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]


def _system_mounts(limits: SandboxLimits) -> list[str]:
    """The host's /usr read-only, fresh /proc and /dev, size-capped tmpfs /tmp and /dev/shm."""
    tmp_bytes = str(max(64, 4 * limits.file_size_mb) << 20)
    argv = ["--ro-bind", "/usr", "/usr"]
    for d in USR_LINKS:
        p = "/" + d
        if os.path.islink(p):
            argv += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            argv += ["--ro-bind", p, p]
    return [
        *argv,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/tmp",
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/dev/shm",
    ]


def _run_mounts(root: str, env: SandboxEnv | None, seeded: bool) -> list[str]:
    """/etc, the code read-only, the working folder, the Python environment and, when the
    workspace holds one, the seeded matplotlib config."""
    argv = ["--dir", "/etc"]
    for name in ETC_FILES:
        argv += ["--ro-bind", f"{root}/etc/{name}", f"/etc/{name}"]
    for name in HOST_ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--ro-bind", f"{root}/code", "/code", "--bind", f"{root}/work", "/work"]
    if env is not None:
        argv += ["--ro-bind", str(env.root), MOUNT]
    if seeded:  # the font cache, copied when the workspace was made (bwrap.py)
        argv += ["--bind", f"{root}/{MPL_DIR}", ENV["MPLCONFIGDIR"]]
    return argv


def _program(limits: SandboxLimits, env: SandboxEnv | None, seeded: bool) -> list[str]:
    """The program under its rlimits: prlimit execs it directly; where prlimit is missing, or
    the font cache still has to be copied inside the run, the Python launcher does both."""
    python = f"{MOUNT}/bin/python" if env is not None else PYTHON
    cpu, mem = limits.cpu_seconds, limits.memory_mb << 20
    nproc, fsize = limits.max_processes, limits.file_size_mb << 20
    if have_prlimit() and (seeded or env is None or env.mplconfig is None):
        return [
            PRLIMIT,
            f"--cpu={cpu}:{cpu + 1}",
            f"--as={mem}",
            f"--nproc={nproc}",
            f"--fsize={fsize}",
            "--core=0",
            "--",
            python,
            "/code/main.py",
        ]
    mpl = f"{MOUNT}/{MPLCONFIG}" if env is not None and env.mplconfig else "-"
    launcher = [PYTHON, "-I", "-S", "-c", LAUNCHER]
    return [*launcher, str(cpu), str(mem), str(nproc), str(fsize), mpl, python, "/code/main.py"]
