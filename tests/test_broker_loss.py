"""When the broker is not there: every command says so in one line and exits with 3; the
long-running ones, stopped with SIGTERM after the broker went away, still end (within their
drain timeout), without a traceback."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.conftest import free_port_block
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks

pytestmark = pytest.mark.kafka

COMMANDS = [
    ["status"],
    ["status", "--watch"],
    ["tail"],
    ["tail", "--from-beginning"],
    ["dlq"],
    ["replay", "--out", "{tmp}/replay"],
    ["produce", "{tmp}/tasks.jsonl"],
    ["runtime", "code", "--metrics-port", "0"],
    ["aggregate", "--out", "{tmp}/out"],
    ["topics", "describe"],
    ["topics", "create"],
    ["topics", "grow", "tasks", "--partitions", "8"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unreachable_broker_is_one_line_and_exit_3(command, tmp_path):
    write_tasks(
        tmp_path / "tasks.jsonl", [{"task_id": "t", "task_type": "code", "description": "d"}]
    )
    address = f"127.0.0.1:{free_port_block()}"  # nothing listens there
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    proc = subprocess.run(
        ADP + args + ["-b", address],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert f"cannot reach Kafka at {address}" in lines[0], lines[0]


def test_sigterm_after_the_broker_is_gone_ends_every_long_running_command(
    kafka, llm_stub, tmp_path
):
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(tmp_path / "home"),
    }
    drain = 5
    procs = {
        "runtime": AdpProcess(
            ["runtime", "code", "--metrics-port", "0", "--drain-timeout", str(drain)],
            tmp_path / "rt.log",
            env,
        ),
        "aggregator": AdpProcess(
            [
                "aggregate",
                "--out",
                str(tmp_path / "out"),
                "--metrics-port",
                "0",
                "--drain-timeout",
                str(drain),
            ],
            tmp_path / "agg.log",
            env,
        ),
        "tail": AdpProcess(["tail", "--follow"], tmp_path / "tail.log", env),
        "status": AdpProcess(
            ["status", "--watch", "--interval", "1"], tmp_path / "status.log", env
        ),
    }
    for proc in procs.values():
        proc.start()
    try:
        # work flows before the broker goes: one task through runtime and aggregator
        tasks = write_tasks(
            tmp_path / "t.jsonl",
            [{"task_id": "loss-0", "task_type": "code", "description": "Print 1."}],
        )
        assert (
            subprocess.run(
                [*ADP, "produce", "--quiet", str(tasks)], env=procs["runtime"].env
            ).returncode
            == 0
        )
        wait_for(
            lambda: (tmp_path / "out" / "loss-0.json").exists(),
            180,
            "one trajectory",
            check=lambda: [p.assert_alive() for p in procs.values()],
        )
        kafka.down()
        for proc in procs.values():
            proc.proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                # the drain timeout, plus start-up of the shutdown path on a loaded machine
                proc.proc.wait(timeout=drain + 45)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{name} still running after SIGTERM without a broker:\n{proc.log()}"
                ) from None
            assert "Traceback" not in proc.log(lines=10_000), f"{name}:\n{proc.log()}"
        assert procs["runtime"].proc.returncode == 0, procs["runtime"].log()
    finally:
        for proc in procs.values():
            proc.kill9()
