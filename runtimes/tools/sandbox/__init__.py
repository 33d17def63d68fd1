"""The python sandbox: runs LLM-written Python and returns exactly what it printed.

Backends are chosen by name, like the sinks: "bwrap" (bubblewrap, bwrap.py, the default where
/usr/bin/bwrap exists) and "docker" (a Docker engine through the docker SDK, docker.py). "auto"
picks bubblewrap, else docker. Each backend is imported only when asked for.
"""

from __future__ import annotations

import os

from adp.core.errors import BadInput, DependencyUnavailable
from adp.core.registry import Registry
from adp.core.settings import settings
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


def make_sandbox(backend: str = "auto") -> Sandbox:
    """ "auto": bubblewrap if its executable exists (settings().sandbox.bwrap, default
    /usr/bin/bwrap), else docker if an engine answers. Raises DependencyUnavailable (one line)
    when neither works."""
    if backend in BACKENDS:
        return BACKENDS.load(backend)()
    if backend != "auto":
        known = ", ".join(["auto", *BACKENDS.names(), *BACKENDS.aliases])
        raise BadInput(f"unknown sandbox backend {backend!r} ({known})")
    bwrap = settings().sandbox.bwrap
    if os.path.exists(bwrap):
        return BACKENDS.load("bwrap")()
    try:
        return BACKENDS.load("docker")()
    except Exception as e:  # the SDK's own errors too (connection, image build): one line
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise DependencyUnavailable(
            f"no python sandbox available: {bwrap} not found (install bubblewrap: apt-get "
            f"install bubblewrap), and the Docker backend failed: {why}"
        ) from e
