"""The deployment's small parts, without a Docker engine: runtime ids unique per process,
`adp health` asking each process on the port it really got, and compose/adp-compose refusing a
Compose that cannot read the file before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adp.core import served
from adp.streams.kafka.broker.server import free_port_block
from tests.helpers import ADP, wait_for

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "compose" / "adp-compose"


# ---- runtime ids ------------------------------------------------------------------------------

ID_OF_A_PROCESS = (
    "from adp.streams.runtime.worker import default_runtime_id; print(default_runtime_id('code'))"
)


def test_runtime_ids_differ_where_host_and_pid_are_the_same() -> None:
    """Replicas of one image on one host network share the hostname, and each container's
    runtime has the same pid: the ids must differ all the same."""
    from adp.streams.runtime.worker import default_runtime_id

    ids = {default_runtime_id("code") for _ in range(50)}
    assert len(ids) == 50
    host_and_pid = {i.rsplit("-", 1)[0] for i in ids}
    assert host_and_pid == {f"code-{os.uname().nodename}-{os.getpid()}"}
    other = subprocess.run(
        [sys.executable, "-c", ID_OF_A_PROCESS], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() not in ids and other.stdout.startswith("code-")


# ---- adp health -------------------------------------------------------------------------------

SERVE = textwrap.dedent(
    """
    import asyncio, sys
    from adp.core import metrics

    async def main():
        health = metrics.Health(sys.argv[1])
        if sys.argv[2] == "sick":
            health.checks.append(lambda: (False, "broker not answering: test"))
        await metrics.serve(health)
        print("serving", health.details["metrics_port"], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


class Component:
    def __init__(self, name: str, state: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, name, state],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("serving"), line
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ADP, "health", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_adp_health_asks_each_process_on_the_port_it_got(tmp_path: Path) -> None:
    """Two components start from the same ADP_METRICS_PORT (as replicas on one host network
    do): the second takes the next port, and `adp health` asks both, each on its own."""
    base = free_port_block()
    env = {**os.environ, "ADP_HOME": str(tmp_path / "home"), "ADP_METRICS_PORT": str(base)}
    assert health(env).returncode == 4  # nothing runs yet: not healthy
    first = Component("runtime a", "well", env)
    second = Component("runtime b", "sick", env)
    try:
        assert (first.port, second.port) == (base, base + 1)
        records = served.live(tmp_path / "home" / "run")
        assert {(r.component, r.port) for r in records} == {
            ("runtime a", base),
            ("runtime b", base + 1),
        }
        checked = health(env)
        assert checked.returncode == 4
        assert f"runtime a (port {base}): healthy" in checked.stdout
        assert f"runtime b (port {base + 1}): broker not answering: test" in checked.stderr
        assert health(env, "--port", str(base)).returncode == 0
        second.stop()  # a process that died is no longer asked, and its record goes
        wait_for(lambda: health(env).returncode == 0, 30, "adp health to forget the dead one")
        assert len(list((tmp_path / "home" / "run" / served.FOLDER).glob("*.json"))) == 1
    finally:
        first.stop()
        second.stop()
    assert health(env).returncode == 4


# ---- compose/adp-compose ----------------------------------------------------------------------


def fake_docker(tmp_path: Path, compose_version: str | None) -> dict[str, str]:
    """A `docker` on PATH whose compose plugin reports `compose_version` (None: no plugin, as
    with Debian's docker-compose 1.29 beside docker.io) and echoes what it is asked to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = f'echo "{compose_version}"' if compose_version else "exit 1"
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "compose version" ]; then ' + answer + "; exit; fi\n"
        'echo "ran: docker $*"\n'
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    "version, why",
    [(None, "is not installed"), ("v2.20.3", "found Docker Compose 2.20.3, which is too old")],
)
def test_adp_compose_refuses_a_compose_that_cannot_read_the_file(tmp_path, version, why) -> None:
    done = subprocess.run(
        [str(WRAPPER), "up", "-d"],
        env=fake_docker(tmp_path, version),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "ran:" not in done.stdout
    assert why in done.stderr and "Compose v2 (2.24.0 or newer)" in done.stderr
    assert "docker-compose 1.x cannot read" in done.stderr


@pytest.mark.parametrize("version", ["2.24.0", "v2.40.3", "5.0.1"])
def test_adp_compose_runs_compose_on_the_file_when_it_can(tmp_path, version) -> None:
    done = subprocess.run(
        [str(WRAPPER), "-p", "x", "up", "-d"],
        env=fake_docker(tmp_path, version),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"ran: docker compose -f {WRAPPER.parent}/docker-compose.yml -p x up -d"
    )
