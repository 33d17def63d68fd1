"""The whole pipeline through a secured broker: `adp kafka up --secure` (SASL_SSL with SCRAM,
a CA and certificates made with openssl, the StandardAuthorizer) and one principal per role
with only its role's ACLs (streams/kafka/authz.py). A principal may do what its role needs and no
more; a wrong password or a missing right fails fast in one line; no secret leaks into logs,
trajectories, metrics or --help."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from adp.streams.kafka.broker.server import KafkaCluster
from tests.conftest import free_port_block
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks
from tests.test_metrics_health import get, metric

pytestmark = pytest.mark.kafka

N_TASKS = 3


@pytest.fixture(scope="module")
def secure(adp_home: Path) -> KafkaCluster:
    cluster = KafkaCluster(
        home=adp_home, bootstrap=f"127.0.0.1:{free_port_block()}", name="secure", secure=True
    )
    try:
        cluster.up(timeout=180)
    except BaseException:
        cluster.down()
        raise
    yield cluster
    cluster.down()


def config(cluster: KafkaCluster, user: str) -> str:
    return str(cluster.security.client_config(user))


def adp(*args: str, timeout: float = 90, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ADP + list(args), capture_output=True, text=True, timeout=timeout, input=stdin
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_wrong_password_fails_fast_in_one_line(secure, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'bootstrap = "{secure.bootstrap}"\nsecurity_protocol = "SASL_SSL"\n'
        f'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "observer"\n'
        f'sasl_password = "wrong"\nssl_cafile = "{secure.security.tls / "ca.pem"}"\n'
    )
    for command in (["status"], ["tail", "--from-beginning"], ["dlq"]):
        error = one_line_error(adp(*command, "--config", str(bad), timeout=60))
        assert "rejected the credentials of observer" in error, error
    plain = adp("status", "-b", secure.bootstrap, timeout=60)  # no TLS, no SASL at all
    assert "closed the connection" in one_line_error(plain)


def test_a_principal_without_write_on_steps_is_refused_before_taking_work(secure):
    # the observer may read the task topics but not write adp.steps
    error = one_line_error(
        adp("runtime", "code", "--metrics-port", "0", "--config", config(secure, "observer"))
    )
    assert "does not allow User:observer WRITE on adp.steps" in error, error
    # the producer may not read task topics
    error = one_line_error(
        adp("runtime", "code", "--metrics-port", "0", "--config", config(secure, "producer"))
    )
    assert "READ on adp.tasks.code" in error and "WRITE on adp.steps" in error, error
    # and the observer may not produce tasks
    task = json.dumps({"task_id": "refused", "task_type": "code", "description": "d"})
    proc = adp("produce", "-", "--quiet", "--config", config(secure, "observer"), stdin=task)
    assert proc.returncode == 3 and "User:observer WRITE on adp.tasks.code" in proc.stderr, (
        proc.stderr
    )


def test_pipeline_runs_with_each_role_its_own_principal(secure, llm_stub, tmp_path):
    out = tmp_path / "out"
    metrics_port = free_port_block()
    env = {"ADP_LLM_BASE_URL": llm_stub, "ADP_LLM_MODEL": "stub", "ADP_HOME": str(tmp_path)}
    aggregator = AdpProcess(
        [
            "aggregate",
            "--out",
            str(out),
            "--metrics-port",
            "0",
            "--config",
            config(secure, "aggregator"),
        ],
        tmp_path / "agg.log",
        env,
    ).start()
    runtime = AdpProcess(
        [
            "-v",
            "runtime",
            "code",
            "--metrics-port",
            str(metrics_port),
            "--config",
            config(secure, "runtime"),
        ],
        tmp_path / "rt.log",
        env,
    ).start()
    ids = [f"secure-{i}" for i in range(N_TASKS)]
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {"task_id": t, "task_type": "code", "description": f"Print {i} times 7.", "timeout": 60}
            for i, t in enumerate(ids)
        ],
    )
    try:
        produced = adp("produce", "--quiet", str(tasks), "--config", config(secure, "producer"))
        assert produced.returncode == 0, produced.stderr

        def written() -> bool:
            return out.exists() and len(list(out.glob("secure-*.json"))) == N_TASKS

        wait_for(
            written,
            240,
            f"{N_TASKS} trajectories through the secured broker",
            check=lambda: (runtime.assert_alive(), aggregator.assert_alive()),
        )
        _, metrics_text = get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metric(metrics_text, "adp_tasks_received_total", task_type="code") == N_TASKS
    finally:
        runtime.stop()
        aggregator.stop()
    for task_id in ids:
        trajectory = json.loads((out / f"{task_id}.json").read_text())
        assert trajectory["success"] is True, trajectory

    # the observer sees it all, and `adp tail --from-beginning --json | ...` ends by itself
    status = adp("status", "--json", "--config", config(secure, "observer"))
    assert status.returncode == 0, status.stderr
    code = next(row for row in json.loads(status.stdout) if row["task_type"] == "code")
    assert code["finished"] == N_TASKS
    tail = adp("tail", "--from-beginning", "--json", "--config", config(secure, "observer"))
    assert tail.returncode == 0, tail.stderr
    finished = {
        json.loads(ln)["task_id"]
        for ln in tail.stdout.splitlines()
        if json.loads(ln)["event_type"] == "finished"
    }
    assert set(ids) <= finished

    # no password and no private key anywhere a user or an operator looks
    secrets = [entry["password"] for entry in secure.security.users().values()]
    key_body = (secure.security.tls / "broker.key").read_text().splitlines()[1]
    secrets.append(key_body)
    help_texts = [
        adp(*cmd, "--help", "--config", config(secure, "runtime")).stdout
        for cmd in (
            ["runtime"],
            ["aggregate"],
            ["produce"],
            ["status"],
            ["tail"],
            ["kafka", "up"],
            ["topics", "describe"],
        )
    ]
    places = {
        "runtime log": runtime.log_path.read_text(),
        "aggregator log": aggregator.log_path.read_text(),
        "broker log": "".join(p.read_text() for p in secure.dir.glob("node-*/server.log")),
        "trajectories": "".join(p.read_text() for p in out.glob("*.json")),
        "metrics": metrics_text,
        "--help": "\n".join(help_texts),
        "tail": tail.stdout,
    }
    for where, text in places.items():
        assert text, f"nothing to check in {where}"
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {where}"
