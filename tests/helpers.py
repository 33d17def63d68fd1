"""Test helpers: run `adp` commands as real processes and wait on observable conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from adp.core.process import http_ok
from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import Provider
from adp.schemas.contracts import Step, Task

T = TypeVar("T")
ADP = [sys.executable, "-m", "adp"]


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    check: Callable[[], None] | None = None,
    interval: float = 0.2,
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`.
    `check` runs each round (e.g. to fail fast when a child process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class AdpProcess:
    """One `adp ...` child process with its output in a log file."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ):
        self.args, self.log_path = args, log_path
        self.env = dict(os.environ, **(env or {}))
        self.command, self.cwd = command or ADP, cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> AdpProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command + self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def assert_alive(self) -> None:
        if not self.alive:
            raise AssertionError(
                f"adp {' '.join(self.args)} exited "
                f"({self.proc and self.proc.returncode}):\n{self.log()}"
            )

    def kill9(self) -> None:
        """kill -9 of the whole process group: no cleanup code of ours runs."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode if self.proc else None


def produce_file(env: dict, tasks: Path) -> None:
    """`adp produce` of a tasks file with `env`; every line must be sent."""
    done = subprocess.run(
        [*ADP, "produce", "--quiet", str(tasks)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def write_tasks(path: Path, tasks: list[dict]) -> Path:
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks))
    return path


def trajectory_files(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


@contextmanager
def llm_stub_process(workdir: Path, *args: str) -> Iterator[str]:
    """`adp llm-stub` as a real process on a free port (extra args: --script, --latency);
    yields its base URL (…/v1) once it answers, stops it afterwards."""
    from tests.conftest import free_port_block

    port = free_port_block()
    stub = AdpProcess(["llm-stub", "--port", str(port), *args], workdir / "stub.log").start()
    try:
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"),
            30,
            "the stub LLM to answer",
            check=stub.assert_alive,
        )
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stub.stop()


@contextmanager
def scripted_stub(script: list[dict[str, Any]], workdir: Path, *args: str) -> Iterator[str]:
    """The stub LLM process answering from `script` (format: runtimes/llm/stub.py); `args`:
    more of its options."""
    path = workdir / "script.json"
    path.write_text(json.dumps(script))
    with llm_stub_process(workdir, "--script", str(path), *args) as url:
        yield url


def client(url: str) -> LLMClient:
    return LLMClient(
        [Provider("stub", url, "stub-model")],
        timeout=30,
        retry=RetryPolicy(attempts=2, base=0.01, cap=0.02),
    )


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def reply(content: str | None, *calls: dict[str, Any]) -> dict[str, Any]:
    return {"content": content, "tool_calls": list(calls)}


async def run_task(runtime: Any, **fields: Any) -> tuple[Any, list[Step]]:
    steps: list[Step] = []

    async def emit(step: Step) -> None:
        steps.append(step)

    fields.setdefault("task_id", "t-" + fields["description"][:20].replace(" ", "-"))
    task = Task(task_type=runtime.task_type, **fields)
    outcome = await runtime.run(task, emit)
    return outcome, steps


class MotoServer:
    """`python -m moto.server` as a child process on 127.0.0.1:port."""

    def __init__(self, port: int, log: Path):
        self.port, self.log = port, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"moto server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"moto server not answering on {self.url} after {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


KV_SERVER = str(Path(__file__).with_name("mcp_kv_server.py"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def mcp_http_process(command: list[str], log_path: Path, port: int) -> Iterator[str]:
    """An MCP server started as `command` listening on 127.0.0.1:port; yields its /mcp url."""
    proc = AdpProcess(command[1:], log_path, command=command[:1]).start()
    try:
        wait_for(lambda: port_open(port), 120, f"MCP server on port {port}", proc.assert_alive)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop(timeout=10)
