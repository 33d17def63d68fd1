"""Outages are not failures, on real parts: a real runtime and aggregator on the real broker, the
stub LLM (`adp llm-stub`) as a real process killed and started again on its port mid-run.

- an endpoint restart mid-run: the runtime pauses (health degraded, `adp status` names it),
  then resumes by itself; every task ends with its real result, none as an LLM failure, none
  twice on adp.trajectories, and the tasks that met the outage ran again under a new attempt;
- an outage past the budget: the tasks it held end as `infrastructure`, the backlog waits
  uncommitted, and exports leave the infrastructure failures out unless asked;
- start-up errors: one line, a distinct exit code, no traceback unless -v."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from adp.core.process import http_ok
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Trajectory
from adp.streams.kafka import topics
from adp.streams.kafka.broker.server import free_port_block
from adp.streams.kafka.reader import read_topic
from tests.helpers import ADP, AdpProcess, produce_file, trajectory_files, wait_for, write_tasks


class Stub:
    """`adp llm-stub` on a port of its own that outlives the process: killed and started
    again there, as an endpoint restarting to load new weights would be."""

    def __init__(self, workdir: Path, latency: float = 0.0) -> None:
        self.port, self.workdir, self.latency = free_port_block(), workdir, latency
        self.process: AdpProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Stub:
        args = ["llm-stub", "--port", str(self.port), "--latency", str(self.latency)]
        self.process = AdpProcess(args, self.workdir / "stub.log").start()
        wait_for(
            lambda: http_ok(f"{self.url}/models"), 30, "the stub LLM", self.process.assert_alive
        )
        return self

    def kill(self) -> None:
        self.process.kill9()


def health(port: int) -> dict:
    """The runtime's /health body (200 or 503 alike), {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except OSError:
        return {}


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def status(env: dict) -> dict:
    done = subprocess.run(
        [*ADP, "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {row["task_type"]: row for row in json.loads(done.stdout)}


def read_all(bootstrap: str, topic: str) -> list:
    """Every record of `topic` now, from the beginning."""
    return asyncio.run(read_topic(bootstrap, topic))


def code_tasks(path: Path, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}-{i:02d}" for i in range(n)]
    write_tasks(
        path,
        [
            {
                "task_id": t,
                "task_type": "code",
                "description": f"Print the number {i} squared.",
                "max_steps": 4,
                "timeout": 300,
            }
            for i, t in enumerate(ids)
        ],
    )
    return ids


def base_env(kafka, tmp_path: Path, stub: Stub) -> dict:
    return {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": stub.url,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(tmp_path / "home"),
        "ADP_METRICS_PORT": "0",
        # probe often: the test waits on the resume, not on a production backoff
        "ADP_OUTAGE_BACKOFF_MIN": "0.2",
        "ADP_OUTAGE_BACKOFF_MAX": "1",
    }


@pytest.mark.kafka
def test_an_llm_endpoint_restart_mid_run_leaves_every_task_its_real_result(kafka, tmp_path):
    stub = Stub(tmp_path, latency=0.2).start()
    env = base_env(kafka, tmp_path, stub)
    out, port, n = tmp_path / "trajectories", free_port_block(), 16
    ids = code_tasks(tmp_path / "tasks.jsonl", "restart", n)
    aggregator = AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start()
    runtime = AdpProcess(
        ["runtime", "code", "-c", "4", "--runtime-id", "rt-restart", "--metrics-port", str(port)],
        tmp_path / "rt.log",
        env,
    ).start()

    def alive() -> None:
        aggregator.assert_alive()
        runtime.assert_alive()

    try:
        produce_file(env, tmp_path / "tasks.jsonl")
        wait_for(lambda: len(list(out.glob("*.json"))) >= 3, 240, "the first trajectories", alive)
        stub.kill()  # mid-run: tasks are waiting on their LLM calls
        paused = wait_for(
            lambda: health(port).get("status") == "degraded" and health(port), 120, "a pause", alive
        )
        assert "connection refused by 127.0.0.1" in paused["degraded"][0], paused
        assert paused["healthy"] is True  # alive, held back: no restart would help
        wait_for(lambda: status(env)["code"]["paused"], 60, "adp status to show the pause", alive)
        [pause] = status(env)["code"]["paused"]
        assert pause["runtime"] == "rt-restart" and "connection refused" in pause["why"]
        wait_for(
            lambda: metric(port, "adp_runtime_outage_seconds_total") >= 2,
            60,
            "two seconds of outage counted",
            alive,
        )
        during = len(list(out.glob("*.json")))
        stub.start()  # the endpoint is back, on the same address
        wait_for(lambda: len(list(out.glob("*.json"))) >= n, 300, f"{n} trajectories", alive)
        wait_for(lambda: health(port).get("status") == "ok", 60, "the runtime resumed", alive)
    finally:
        runtime.stop()
        aggregator.stop()
        stub.kill()

    files = trajectory_files(out)
    assert sorted(files) == ids and during < n
    for task_id, t in files.items():
        assert t["success"] is True, t["metadata"]
        assert t["metadata"]["error_type"] is None
        assert [s["action_type"] for s in t["steps"]] == ["code_execution", "final_answer"]
        run = t["steps"][0]
        assert run["success"] and t["final_result"] == run["observation"].strip() != ""
        assert (
            f"number {ids.index(task_id)} squared"
            in run["llm"]["request"]["messages"][1]["content"]
        )
        assert t["metadata"]["models"] == ["custom/stub"]
    published = [
        codec.decode(r.value, expect=Trajectory)
        for r in read_all(kafka.bootstrap, topics.TRAJECTORIES)
    ]
    assert Counter(t.task_id for t in published) == Counter(ids)  # none twice
    events = [
        codec.decode(r.value, expect=StepEvent) for r in read_all(kafka.bootstrap, topics.STEPS)
    ]
    starts = Counter(e.task_id for e in events if e.event_type == "started")
    assert max(starts.values()) >= 2  # a task that met the outage ran again, under a new attempt
    log = (tmp_path / "rt.log").read_text()
    assert log.count("runtime paused") == 1 and log.count("runtime resumed") == 1
    assert "timed out" not in log


@pytest.mark.kafka
def test_an_outage_past_the_budget_ends_its_tasks_as_infrastructure_and_the_backlog_waits(
    kafka, tmp_path
):
    stub = Stub(tmp_path)  # not started: every call is refused
    env = base_env(kafka, tmp_path, stub)
    out = tmp_path / "trajectories"
    ids = code_tasks(tmp_path / "tasks.jsonl", "budget", 3)
    aggregator = AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start()
    runtime = AdpProcess(
        ["runtime", "code", "-c", "2", "--max-outage", "1", "--metrics-port", "0"],
        tmp_path / "rt.log",
        env,
    ).start()

    def alive() -> None:
        aggregator.assert_alive()
        runtime.assert_alive()

    try:
        produce_file(env, tmp_path / "tasks.jsonl")
        wait_for(lambda: len(list(out.glob("*.json"))) >= 2, 240, "two given up", alive)
        given_up = trajectory_files(out)
        row = status(env)["code"]
        assert len(given_up) == 2 and row["pending"] >= 1 and row["paused"]  # the third waits
        stub.start()
        wait_for(lambda: len(list(out.glob("*.json"))) == 3, 240, "the third task", alive)
    finally:
        runtime.stop()
        aggregator.stop()
        if stub.process:
            stub.kill()

    files = trajectory_files(out)
    assert sorted(files) == ids
    for task_id, t in files.items():
        meta = t["metadata"]
        if task_id in given_up:
            assert t["success"] is False and meta["error_type"] == "infrastructure"
            assert f"connection refused by 127.0.0.1:{stub.port}" in meta["error"]
            assert "over the outage budget of 1s" in meta["error"]
        else:
            assert t["success"] is True and meta["error_type"] is None
    exported = export(out, tmp_path / "export")
    assert exported["filtered"] == {"infrastructure failure": 2}
    assert sum(exported["trajectories"].values()) == 1
    everything = export(out, tmp_path / "all", "--include-infrastructure")
    assert "infrastructure failure" not in everything["filtered"]


def export(folder: Path, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [*ADP, "export", str(folder), "--format", "chat", "--out", str(out), "--json", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


STARTUP_ERRORS = [
    (
        ["runtime", "web"],
        {"ADP_CHROMIUM": "/nowhere/chromium"},
        5,
        "Error: Chromium not found at /nowhere/chromium (browser.chromium, ADP_CHROMIUM)",
    ),
    (
        ["runtime", "code"],
        {"ADP_SANDBOX_ENV": "/nowhere/env"},
        5,
        "Error: ADP_SANDBOX_ENV=/nowhere/env: no built sandbox environment there",
    ),
    (
        ["runtime", "code"],
        # no bubblewrap, and no Docker engine to fall back to
        {"ADP_SANDBOX_BWRAP": "/nowhere/bwrap", "DOCKER_HOST": "unix:///nowhere/docker.sock"},
        5,
        "Error: no python sandbox available: /nowhere/bwrap not found (install bubblewrap",
    ),
    (
        ["runtime", "code"],
        {"ADP_LLM_PROVIDER": "gemini"},
        1,
        "Error: ADP_LLM_PROVIDER='gemini' is not configured (set GEMINI_API_KEY)",
    ),
    (
        ["runtime", "code"],
        {"ADP_MAX_OUTAGE": "-5"},
        1,
        "Error: invalid settings: runtime.max_outage (ADP_MAX_OUTAGE)",
    ),
]


@pytest.mark.parametrize(("args", "env", "code", "line"), STARTUP_ERRORS)
def test_a_start_up_error_is_one_line_and_its_exit_code(args, env, code, line):
    # the broker is never reached: these are found before
    command = [*ADP, *args, "-b", "127.0.0.1:1"]
    done = subprocess.run(command, env={**_clean_env(), **env}, capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith(line) and len(done.stderr.splitlines()) == 1, done.stderr


def test_verbose_start_up_errors_keep_their_traceback():
    env = {**_clean_env(), "ADP_CHROMIUM": "/nowhere/chromium"}
    command = [*ADP, "-v", "runtime", "web", "-b", "127.0.0.1:1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 5 and "Traceback" in done.stderr
    assert done.stderr.rstrip().endswith(
        STARTUP_ERRORS[0][3] + ": install it (apt-get install "
        "chromium) or point ADP_CHROMIUM at one"
    )


@pytest.mark.kafka
def test_a_browser_that_cannot_launch_is_one_line_and_exit_5(kafka):
    env = {**_clean_env(), "ADP_BOOTSTRAP": kafka.bootstrap, "ADP_CHROMIUM": "/bin/false"}
    done = subprocess.run(
        [*ADP, "runtime", "web", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert errors == [done.stderr.splitlines()[-1]], done.stderr
    assert errors[0].startswith("Error: the browser cannot start: /bin/false:"), done.stderr


def _clean_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ADP_LLM_")}
