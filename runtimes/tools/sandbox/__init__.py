"""The python sandbox: runs LLM-written Python and returns exactly what it printed.

Backends are chosen by name, like the sinks: "bwrap" (bubblewrap, bwrap.py, the default where
/usr/bin/bwrap exists) and "docker" (a Docker engine through the docker SDK, docker.py). "auto"
picks bubblewrap, else docker. Each backend is imported only when asked for.
"""

from __future__ import annotations

import importlib
import os

from adp.runtimes.tools.sandbox.base import (CollectedFile, ExecResult, Sandbox, SandboxLimits,
                                              Workspace)

__all__ = ["CollectedFile", "ExecResult", "Sandbox", "SandboxLimits", "Workspace", "make_sandbox",
           "BACKENDS"]

# name -> "module:Class"
BACKENDS = {
    "bwrap": "adp.runtimes.tools.sandbox.bwrap:BubblewrapSandbox",
    "docker": "adp.runtimes.tools.sandbox.docker:DockerSandbox",
}
ALIASES = {"bubblewrap": "bwrap"}
BWRAP = "/usr/bin/bwrap"


def _backend(name: str) -> type:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_sandbox(backend: str = "auto") -> Sandbox:
    """"auto": bubblewrap if /usr/bin/bwrap exists, else docker if an engine answers."""
    name = ALIASES.get(backend, backend)
    if name in BACKENDS:
        return _backend(name)()
    if name != "auto":
        known = ", ".join(["auto", *BACKENDS, *ALIASES])
        raise ValueError(f"unknown sandbox backend {backend!r} ({known})")
    if os.path.exists(BWRAP):
        return _backend("bwrap")()
    try:
        return _backend("docker")()
    except RuntimeError as e:
        raise RuntimeError(
            "no python sandbox available: install bubblewrap (apt-get install bubblewrap) "
            f"or make a Docker engine reachable ({e})") from None
