"""The sandbox's own Python environment: what LLM-written code can import.

A venv of Debian's /usr/bin/python3 (never the runtime's interpreter or venv, so the platform
itself is not importable inside) with the packages of a requirements file: by default
requirements.txt beside this module (numpy, pandas, matplotlib, scipy, scikit-learn, sympy, all
pinned); a deployment sets ADP_SANDBOX_REQUIREMENTS to its own file.

It is built once (`adp sandbox build`, `make`, or on first use) into
$ADP_CACHE_DIR/sandbox/py<version>-<key>/ (as root, where that folder cannot be reached by other
users, e.g. under a 0700 /root: /var/cache/adp/sandbox/, because the sandbox runs as an
unprivileged uid that must reach it), where key is a hash of the requirements, the
interpreter's version and the machine: changing the file builds a new environment beside the old
one, and a finished build is never touched again (the `.adp-ready` marker is written last; a
folder without it is an interrupted build and is redone). A file lock keeps two processes from
building the same environment at once. Wheels only (--only-binary=:all:): nothing compiles.

The sandbox mounts it read-only at /env and execs /env/bin/python: a program that imports
nothing starts as fast as with the bare interpreter (bench/parts/j_sandbox_env.py measures it).
matplotlib's font cache is built into the environment (mplconfig/, its paths rewritten to /env),
because a fresh sandbox would otherwise rebuild it on every `import matplotlib.pyplot`; the
launcher copies it into the run's private MPLCONFIGDIR.

ADP_SANDBOX_ENV: "none" runs Debian's bare python3 (nothing beyond the standard library), a
path uses a prebuilt environment there (e.g. one baked into an image), unset: the cached one.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from adp.core.errors import DependencyUnavailable
from adp.core.settings import settings

log = logging.getLogger(__name__)

INTERPRETER = "/usr/bin/python3"  # Debian's interpreter, the one the sandbox runs
DEFAULT_REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
READY = ".adp-ready"
MPLCONFIG = "mplconfig"
SYSTEM_ENVS = Path("/var/cache/adp/sandbox")
MOUNT = "/env"  # where the environment is inside the sandbox


class SandboxEnvError(DependencyUnavailable):
    pass


@dataclass(frozen=True)
class SandboxEnv:
    """A built environment: `root` is the venv, mounted read-only into every run."""

    root: Path

    @property
    def python(self) -> str:
        """The interpreter on the host (the sandbox runs MOUNT/bin/python)."""
        return str(self.root / "bin" / "python")

    @property
    def mplconfig(self) -> Path | None:
        p = self.root / MPLCONFIG
        return p if p.is_dir() else None

    @property
    def requirements(self) -> str:
        return (self.root / READY).read_text()

    def libraries(self) -> list[str]:
        """What the prompt should name: the `# announce:` line of the requirements it was built
        from, else every package in it."""
        return announced(self.requirements)


def announced(requirements: str) -> list[str]:
    names = []
    for line in requirements.splitlines():
        line = line.strip()
        if line.startswith("# announce:"):
            return line.split(":", 1)[1].split()
        if line and not line.startswith(("#", "-")):
            names.append(re.split(r"[\s=<>!~;\[@]", line, maxsplit=1)[0])
    return names


def requirements_path() -> Path:
    return settings().sandbox.requirements or DEFAULT_REQUIREMENTS.resolve()


@functools.cache
def _interpreter_version() -> str:
    try:
        out = subprocess.run(
            [INTERPRETER, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxEnvError(
            f"{INTERPRETER} does not run ({exc}): apt-get install python3"
        ) from None
    return out.stdout.strip()


def requirement_lines(text: str) -> list[str]:
    """The lines that decide what gets installed (comments and blank lines do not)."""
    return [
        ln.split(" #", 1)[0].strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]


def env_dir(requirements: Path | None = None) -> Path:
    """Where the environment for `requirements` lives (built or not)."""
    req = requirements or requirements_path()
    try:
        text = req.read_text()
    except OSError as exc:
        raise SandboxEnvError(f"cannot read the sandbox requirements {req}: {exc}") from None
    version = _interpreter_version()
    key = hashlib.sha256(
        "\n".join([*requirement_lines(text), version, platform.machine()]).encode()
    )
    major_minor = ".".join(version.split(".")[:2])
    return envs_root(settings().cache_dir) / f"py{major_minor}-{key.hexdigest()[:16]}"


def envs_root(cache_dir: Path) -> Path:
    """Where environments are kept: under the cache dir, unless the sandbox's unprivileged uid
    could not reach it there."""
    root = cache_dir / "sandbox"
    if os.geteuid() != 0 or _reachable_by_others(cache_dir):
        return root
    return SYSTEM_ENVS


def _reachable_by_others(path: Path) -> bool:
    p = path
    while not p.exists():
        p = p.parent
    while True:
        if not os.stat(p).st_mode & 0o001:
            return False
        if p == p.parent:
            return True
        p = p.parent


def find_env() -> SandboxEnv | None:
    """The environment the sandbox should use now, if it is built (see ADP_SANDBOX_ENV)."""
    sandbox = settings().sandbox
    chosen = (sandbox.env or "").strip()
    if sandbox.bare:
        return None
    root = Path(chosen).resolve() if chosen else env_dir()
    if (root / READY).is_file():
        return SandboxEnv(root)
    if chosen:
        raise SandboxEnvError(
            f"ADP_SANDBOX_ENV={chosen}: no built sandbox environment there "
            f"(build one with `adp sandbox build --into {chosen}`)"
        )
    return None


def ensure_env(progress=None) -> SandboxEnv | None:
    """The environment to use, building it first when it is missing (None: ADP_SANDBOX_ENV=none)."""
    if settings().sandbox.bare:
        return None
    return find_env() or build_env(progress=progress)


def build_env(
    requirements: Path | None = None,
    into: Path | None = None,
    *,
    force: bool = False,
    progress=None,
) -> SandboxEnv:
    """Build (or find already built) the environment for `requirements` at `into` (default: the
    cache folder keyed by its hash). `progress(message)` hears what happens."""
    say = progress or (lambda msg: log.info("%s", msg))
    req = (requirements or requirements_path()).resolve()
    root = (into or env_dir(req)).resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same env: wait for it
        if (root / READY).is_file() and not force:
            return SandboxEnv(root)
        if root.exists():
            shutil.rmtree(root)  # an interrupted build (no marker), or --force
        began = time.monotonic()
        say(
            f"building the sandbox environment from {req} into {root} (once; about a minute "
            "with warm wheels, longer when they download)"
        )
        try:
            _install(root, req)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        say(f"sandbox environment ready in {time.monotonic() - began:.0f}s: {root}")
        return SandboxEnv(root)


def _install(root: Path, req: Path) -> None:
    """Create the venv at `root`, install `req` into it and write the READY marker last."""
    _run([INTERPRETER, "-m", "venv", "--without-pip", str(root)], "create the venv")
    pip = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python")]
    _pip_wheels(pip, root.parent / "wheels", req)
    _font_cache(root)
    frozen = subprocess.run([*pip, "freeze"], capture_output=True, text=True, timeout=120).stdout
    _readable(root)
    (root / READY).write_text(f"# built from {req}\n{_announce_line(req)}{frozen}")


def _pip_wheels(pip: list[str], wheels: Path, req: Path) -> None:
    """Download the wheels of `req` into `wheels`, then install from there alone. `wheels` is
    kept across builds, so a changed requirements file fetches only what is new."""
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input", "--only-binary=:all:"]
    links = ["--find-links", str(wheels), "--requirement", str(req)]
    _run([*pip, "download", *quiet, "--dest", str(wheels), *links], f"download the wheels of {req}")
    _run([*pip, "install", *quiet, "--no-index", *links], f"install {req}")


def _announce_line(req: Path) -> str:
    line = next((ln for ln in req.read_text().splitlines() if ln.startswith("# announce:")), None)
    return f"{line}\n" if line else f"# announce: {' '.join(announced(req.read_text()))}\n"


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise SandboxEnvError(
            f"sandbox environment: could not {what} (exit {r.returncode}):\n{tail}"
        )


def _font_cache(root: Path) -> None:
    """matplotlib's font list, built once here instead of in every run."""
    python = root / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True)
    if probe.returncode != 0:
        return  # no matplotlib in this environment
    (root / MPLCONFIG).mkdir()
    r = subprocess.run(
        [str(python), "-c", "import matplotlib.font_manager as f; f.fontManager"],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "MPLCONFIGDIR": str(root / MPLCONFIG),
            "MPLBACKEND": "Agg",
            "HOME": str(root),
        },
    )
    if r.returncode != 0:
        raise SandboxEnvError(f"sandbox environment: matplotlib's font cache: {r.stderr[-1500:]}")
    for cache in (root / MPLCONFIG).iterdir():  # the fonts it lists are under MOUNT in the sandbox
        if cache.suffix == ".json":
            cache.write_text(cache.read_text().replace(json.dumps(str(root))[1:-1], MOUNT))


def _readable(root: Path) -> None:
    """Every file readable and every folder searchable by others: the sandbox runs as an
    unprivileged uid when the runtime is root."""
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
