"""The python sandbox: runs LLM-written Python and returns exactly what it printed.

Backends are chosen by name, like the sinks: "bwrap" (bubblewrap, bwrap.py, the default where
/usr/bin/bwrap exists) and "docker" (a Docker engine through the docker SDK, docker.py). "auto"
picks bubblewrap, else docker. Each backend is imported only when asked for.
"""

from __future__ import annotations

import os

from adp.core.errors import BadInput, DependencyUnavailable
from adp.core.registry import Registry
from adp.runtimes.tools.sandbox.base import (
    CollectedFile,
    ExecResult,
    Sandbox,
    SandboxLimits,
    Workspace,
)

__all__ = [
    "BACKENDS",
    "CollectedFile",
    "ExecResult",
    "Sandbox",
    "SandboxLimits",
    "Workspace",
    "make_sandbox",
]

BACKENDS = Registry(
    "sandbox backend",
    {
        "bwrap": "adp.runtimes.tools.sandbox.bwrap:BubblewrapSandbox",
        "docker": "adp.runtimes.tools.sandbox.docker:DockerSandbox",
    },
    aliases={"bubblewrap": "bwrap"},
)
BWRAP = "/usr/bin/bwrap"


def make_sandbox(backend: str = "auto") -> Sandbox:
    """ "auto": bubblewrap if /usr/bin/bwrap exists, else docker if an engine answers."""
    if backend in BACKENDS:
        return BACKENDS.load(backend)()
    if backend != "auto":
        known = ", ".join(["auto", *BACKENDS.names(), *BACKENDS.aliases])
        raise BadInput(f"unknown sandbox backend {backend!r} ({known})")
    if os.path.exists(BWRAP):
        return BACKENDS.load("bwrap")()
    try:
        return BACKENDS.load("docker")()
    except DependencyUnavailable as e:
        raise DependencyUnavailable(
            "no python sandbox available: install bubblewrap (apt-get install bubblewrap) "
            f"or make a Docker engine reachable ({e})"
        ) from None
