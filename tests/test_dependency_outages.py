"""A dependency that stops answering mid-run is an outage, not the agent's doing, on real
parts: a sandbox whose bubblewrap cannot start, a Chromium that cannot launch, an LLM endpoint
that refuses. Each raises DependencyOutage (with a probe) through the agent loop, never an error
observation or an `llm_error` outcome, so the runtime worker pauses instead of finishing the
task (tests/test_breaker.py, tests/test_outages.py)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from adp.core.errors import DependencyOutage, DependencyUnavailable
from adp.runtimes.agent import Agent
from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import Provider
from adp.runtimes.tools.browser import BrowserPool
from adp.runtimes.tools.python import python_tool
from adp.runtimes.tools.sandbox import SandboxLimits
from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox, sandbox_available
from adp.schemas.contracts import Task
from tests.helpers import call, reply, scripted_stub

BWRAP_REASON = sandbox_available()
TASK = Task(task_id="t", task_type="code", description="print one")


async def emit(step) -> None:
    raise AssertionError(f"no step is made when a dependency is down: {step}")


@pytest.fixture
def folder():
    """A folder the sandbox's unprivileged uid can reach (as root, bubblewrap runs as one)."""
    path = Path(tempfile.mkdtemp(prefix="adp-fake-bwrap-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_bwrap(folder: Path, stderr: str) -> Path:
    """An executable that fails the way bubblewrap does when it cannot set a sandbox up."""
    path = folder / "bwrap"
    path.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(BWRAP_REASON is not None, reason=f"bubblewrap unusable: {BWRAP_REASON}")
async def test_a_sandbox_that_cannot_start_is_an_outage_until_its_probe_passes(folder, monkeypatch):
    bwrap = fake_bwrap(folder, "bwrap: setting up uid map: Permission denied")
    monkeypatch.setenv("ADP_SANDBOX_BWRAP", str(bwrap))
    sandbox = BubblewrapSandbox(env=None)
    with pytest.raises(DependencyOutage) as info:
        await sandbox.run_python("print(1)", SandboxLimits())
    outage = info.value
    assert outage.dependency == "sandbox"
    assert str(outage) == (
        "the python sandbox cannot start: bwrap: setting up uid map: Permission denied"
    )
    with pytest.raises(DependencyOutage, match="bubblewrap cannot create"):
        await outage.probe()
    bwrap.unlink()  # gone altogether: the run cannot even be started
    with pytest.raises(DependencyOutage, match="No such file or directory"):
        await sandbox.run_python("print(1)", SandboxLimits())
    sandbox.bwrap = "/usr/bin/bwrap"  # bubblewrap is back
    await outage.probe()
    assert (await sandbox.run_python("print(6 * 7)", SandboxLimits())).stdout == "42\n"


@pytest.mark.skipif(BWRAP_REASON is not None, reason=f"bubblewrap unusable: {BWRAP_REASON}")
async def test_the_agent_loop_lets_a_tool_outage_through(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_SANDBOX_BWRAP", str(fake_bwrap(folder, "bwrap: no permissions")))
    sandbox = BubblewrapSandbox(env=None)
    script = [{"replies": [reply(None, call("python", code="print(1)"))]}]
    with scripted_stub(script, tmp_path) as url:
        model = LLMClient([Provider("stub", url, "m")], retry=RetryPolicy(1, 0.001, 0.001))
        agent = Agent(model, [python_tool(sandbox, SandboxLimits())], "You are careful.")
        with pytest.raises(DependencyOutage, match="python sandbox cannot start"):
            await agent.run(TASK, emit)
        await model.aclose()


async def test_the_agent_loop_lets_an_llm_outage_through():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = LLMClient(
        [Provider("p", f"http://127.0.0.1:{port}/v1", "m")], retry=RetryPolicy(1, 0.001, 0.001)
    )
    agent = Agent(model, [], "You are careful.")
    with pytest.raises(DependencyOutage, match=f"connection refused by 127.0.0.1:{port}"):
        await agent.run(TASK, emit)
    await model.aclose()


async def test_a_browser_that_cannot_launch_is_an_outage_and_a_missing_one_is_unavailable():
    with pytest.raises(DependencyUnavailable, match="Chromium not found at /nowhere/chromium"):
        BrowserPool(executable="/nowhere/chromium")
    pool = BrowserPool(executable="/bin/false", launch_timeout=20)
    with pytest.raises(DependencyOutage, match="the browser cannot start: /bin/false") as info:
        await pool.start()
    assert info.value.dependency == "browser"
    with pytest.raises(DependencyOutage):
        await info.value.probe()
    await pool.close()
    assert os.access("/bin/false", os.X_OK)
