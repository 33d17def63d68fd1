"""A real Docker engine for the tests marked `docker` (make test-docker): the docker CLI, the
platform image built from the Dockerfile once per session, and compose/docker-compose.yml as
Compose reads it.

Every container and build here uses `--network host` or `--network none`, never a network of
Docker's own: test machines have no bridge and may send nothing to private-range addresses.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
IMAGE = "adp-test:latest"
BUILD_TIMEOUT = 1800  # a cold build on 2 cores: apt (Chromium), pip, the sandbox environment


def docker(
    *args: str, timeout: float = 120, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args[:6])} exited {done.returncode}:\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}"
        )
    return done


@functools.cache
def engine_problem() -> str | None:
    """Why no engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        done = docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker info did not answer in 30 s"
    if done.returncode != 0 or not done.stdout.strip():
        return (done.stderr.strip().splitlines() or ["docker info failed"])[-1]
    return None


def require_engine() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"no Docker engine reachable: {problem}")


def build_platform_image(log: Path) -> str:
    """`docker build --network host -t IMAGE .` from the checkout; layers are cached by the
    engine, so a rebuild after a source change redoes only the wheel. Fails with the build's
    last lines."""
    began = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(
            ["docker", "build", "--network", "host", "-t", IMAGE, str(ROOT)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
        )
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    assert done.returncode == 0, f"docker build failed ({log}):\n{tail}"
    print(f"platform image built in {time.monotonic() - began:.0f} s")
    return IMAGE


@functools.cache
def compose_services() -> dict[str, dict]:
    """The services of compose/docker-compose.yml, anchors and merges resolved."""
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def container_options(service: str) -> list[str]:
    """The `docker run` options that compose gives `service` for security and shared memory."""
    svc = compose_services()[service]
    opts = [f"--cap-drop={cap}" for cap in svc.get("cap_drop", [])]
    opts += [f"--security-opt={opt}" for opt in svc.get("security_opt", [])]
    if "shm_size" in svc:
        opts.append(f"--shm-size={svc['shm_size']}")
    return opts


def run_python(
    image: str, script: str, options: list[str], network: str = "none", timeout: float = 300
) -> subprocess.CompletedProcess:
    """`script` run by the image's Python as the image's user, in a fresh container."""
    return docker(
        "run",
        "--rm",
        f"--network={network}",
        *options,
        "--entrypoint",
        "python",
        image,
        "-c",
        script,
        timeout=timeout,
        check=False,
    )
