"""`adp llm up|status|down` with the real llama.cpp server and SmolLM2 GGUF (skipped with the
reason when they are not installed), plus adp.core.process.ManagedProcess on a plain HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from adp.app.cli import main
from adp.core.process import ManagedProcess, ProcessError, http_ok, pid_alive
from adp.runtimes.llm import server as llm_server
from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import LOCAL_MODEL, Provider


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_llama() -> str | None:
    try:
        llm_server.check_server_deps()
        llm_server.find_gguf()
    except llm_server.MissingDependency as exc:
        return str(exc)
    return None


def adp(home: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADP_HOME": str(home), "ADP_LLM_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "adp", "llm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    missing_llama() is not None, reason=f"embedded LLM not installed: {missing_llama()}"
)
async def test_up_chat_status_down(tmp_path):
    port = free_port()
    up = adp(tmp_path, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}/v1" in up.stdout
        pid = int((tmp_path / "run" / "llm-server.pid").read_text())
        assert pid_alive(pid)
        again = adp(tmp_path, port, "up")
        assert again.returncode == 0 and "already running" in again.stdout

        client = LLMClient(
            [Provider("local", f"http://127.0.0.1:{port}/v1", LOCAL_MODEL)],
            max_tokens=24,
            retry=RetryPolicy(2, 0.01, 0.1),
            timeout=120,
        )
        reply = await client.chat([{"role": "user", "content": "Say hello in one short sentence."}])
        assert reply.content.strip()
        assert reply.exchange.provider == "local" and reply.exchange.completion_tokens > 0
        await client.aclose()

        status = adp(tmp_path, port, "status")
        assert (
            status.returncode == 0
            and f"pid {pid}" in status.stdout
            and LOCAL_MODEL in status.stdout
        )
    finally:
        down = adp(tmp_path, port, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pid_alive(pid)
    assert not (tmp_path / "run" / "llm-server.pid").exists()
    assert not http_ok(f"http://127.0.0.1:{port}/v1/models")
    stopped = adp(tmp_path, port, "status")
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    assert adp(tmp_path, port, "down").returncode == 0  # idempotent


def test_missing_dependency_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_HOME", str(tmp_path))
    monkeypatch.setattr(llm_server, "SERVER_MODULES", ("adp_no_such_module",))
    result = CliRunner().invoke(main, ["llm", "up", "--port", str(free_port())])
    assert result.exit_code != 0
    assert "pip install" in result.output and "adp_no_such_module" in result.output


def test_managed_process_lifecycle(tmp_path):
    port = free_port()
    proc = ManagedProcess(
        name="http",
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        pid_file=tmp_path / "run" / "http.pid",
        log_file=tmp_path / "logs" / "http.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        marker="http.server",
        cwd=tmp_path,
    )
    assert proc.pid() is None and proc.stop() is None
    pid, started = proc.start(timeout=60)
    assert started and pid_alive(pid) and http_ok(f"http://127.0.0.1:{port}/")
    assert proc.start(timeout=60) == (pid, False)
    assert proc.stop(grace=10) == pid
    assert not pid_alive(pid) and not proc.pid_file.exists()

    dying = ManagedProcess(
        name="dying",
        argv=[sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
        pid_file=tmp_path / "run" / "d.pid",
        log_file=tmp_path / "logs" / "d.log",
        ready=lambda: False,
    )
    with pytest.raises(ProcessError, match=r"exited during startup \(exit status 3\)") as info:
        dying.start(timeout=60)
    assert "boom" in str(info.value) and str(dying.log_file) in str(info.value)

    # the marker guards pid files of others (a pid reused by another program); the child this
    # object started is its own whatever its command line shows (an exec'ing child shows none)
    own = ManagedProcess(
        name="own",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        pid_file=tmp_path / "run" / "own.pid",
        log_file=tmp_path / "logs" / "o.log",
        marker="not-in-its-command-line",
    )
    pid, started = own.start(timeout=60)
    try:
        assert started and own.pid() == pid and own.running()
        stranger = ManagedProcess(
            name="own",
            argv=[],
            pid_file=own.pid_file,
            log_file=own.log_file,
            marker="not-in-its-command-line",
        )
        assert stranger.pid() is None and not own.pid_file.exists()  # stale for anyone else
        own.pid_file.write_text(f"{pid}\n")
    finally:
        assert own.stop(grace=10) == pid
    assert not pid_alive(pid)

    # a process that dies silently (kill -9, the OOM killer) still says how it ended
    killed = ManagedProcess(
        name="killed",
        argv=["sh", "-c", "kill -9 $$"],
        pid_file=tmp_path / "run" / "k.pid",
        log_file=tmp_path / "logs" / "k.log",
        ready=lambda: False,
    )
    with pytest.raises(ProcessError, match=r"exited during startup \(killed by SIGKILL\)"):
        killed.start(timeout=60)
    assert killed.pid() is None and killed.exit_description() == "killed by SIGKILL"

    (tmp_path / "run" / "stale.pid").write_text("999999999\n")  # a pid that cannot exist
    stale = ManagedProcess(
        name="stale",
        argv=["true"],
        pid_file=tmp_path / "run" / "stale.pid",
        log_file=tmp_path / "logs" / "s.log",
    )
    assert stale.pid() is None and not stale.pid_file.exists()
