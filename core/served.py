"""Which processes of this host serve /metrics and /health, and on which port.

A component takes ADP_METRICS_PORT or, when another process holds it, the next free port
(core/metrics.py serve). A health check run beside it (`adp health`, a container's HEALTHCHECK)
must ask that process, not whichever process holds the configured port: replicas of one image on
one host network all start from 8001. So each serving process records its port in
ADP_HOME/run/served/<pid>.json, and the records of processes that no longer run are ignored and
pruned.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from adp.core.process import pid_alive

FOLDER = "served"


@dataclass(frozen=True)
class Served:
    component: str
    pid: int
    port: int

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


def _folder(run_dir: Path | None) -> Path:
    if run_dir is None:
        from adp.core.settings import settings

        run_dir = settings().run_dir
    return run_dir / FOLDER


def record(component: str, port: int, run_dir: Path | None = None) -> Path:
    """Say that this process serves `component`'s /health on `port` (removed at exit)."""
    folder = _folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"component": component, "pid": os.getpid(), "port": port}))
    tmp.replace(path)  # a health check never reads half a record
    atexit.register(_forget, path)
    return path


def _forget(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def live(run_dir: Path | None = None) -> list[Served]:
    """The recorded processes that still run, by pid; records of dead ones are removed."""
    folder = _folder(run_dir)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            served = Served(str(data["component"]), int(data["pid"]), int(data["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
        # our own pid in a record is a stale one reused (the asking process serves nothing)
        if served.pid != os.getpid() and pid_alive(served.pid):
            found.append(served)
        else:
            _forget(path)
    return found
