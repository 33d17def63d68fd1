"""/metrics and /health of the runtime and the aggregator on the real broker: counters move with
real work, and /health turns 503 while the broker is down and 200 again when it is back."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from adp.streams.kafka import topics
from tests.conftest import free_port_block
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks

pytestmark = pytest.mark.kafka


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_real_work_and_health_follows_the_broker(kafka, llm_stub, tmp_path):
    rt_port, agg_port = free_port_block(), free_port_block()
    env = {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_LLM_BASE_URL": llm_stub}
    out = tmp_path / "out"
    agg = AdpProcess(
        ["aggregate", "--out", str(out), "--metrics-port", str(agg_port)], tmp_path / "agg.log", env
    ).start()
    rt = AdpProcess(
        ["runtime", "code", "--metrics-port", str(rt_port)], tmp_path / "rt.log", env
    ).start()
    runtime, aggregator = f"http://127.0.0.1:{rt_port}", f"http://127.0.0.1:{agg_port}"
    try:
        tasks = write_tasks(
            tmp_path / "t.jsonl",
            [
                {"task_id": f"metrics-{i}", "task_type": "code", "description": f"print {i}"}
                for i in range(3)
            ],
        )
        assert subprocess.run([*ADP, "produce", "--quiet", str(tasks)], env=rt.env).returncode == 0
        wait_for(
            lambda: len(list(out.glob("metrics-*.json"))) == 3 if out.exists() else False,
            120,
            "3 trajectories",
            check=lambda: (rt.assert_alive(), agg.assert_alive()),
        )

        _, text = get(f"{runtime}/metrics")
        assert metric(text, "adp_tasks_received_total", task_type="code") == 3
        assert metric(text, "adp_tasks_finished_total", task_type="code", outcome="success") == 3
        assert metric(text, "adp_tasks_in_flight", task_type="code") == 0
        assert (
            metric(
                text,
                "adp_step_duration_seconds_count",
                task_type="code",
                action_type="code_execution",
            )
            == 3
        )
        assert metric(text, "adp_llm_requests_total") is not None  # the LLM client's counters
        wait_for(
            lambda: (
                metric(
                    get(f"{aggregator}/metrics")[1],
                    "adp_sink_writes_total",
                    sink="file",
                    outcome="ok",
                )
                == 3
            ),
            30,
            "3 sink writes counted",
        )
        _, agg_text = get(f"{aggregator}/metrics")
        assert metric(agg_text, "adp_trajectories_total", task_type="code", success="true") == 3
        assert metric(agg_text, "adp_aggregator_events_total") >= 12  # started, 2 steps, finished
        assert metric(agg_text, "adp_sink_latency_seconds_count", sink="file") == 3

        status, body = get(f"{runtime}/health")
        assert status == 200, body
        health = json.loads(body)
        assert health["healthy"] and health["partitions"] == {
            topic: [0, 1, 2, 3, 4, 5] for topic in topics.lane_topics("code")
        }
        # nothing left behind on any priority lane, in /health and in the lag gauge
        wait_for(
            lambda: (
                json.loads(get(f"{runtime}/health")[1]).get("lag")
                == {"high": 0, "default": 0, "low": 0}
            ),
            30,
            "the lag per lane to reach 0",
        )
        assert (
            metric(get(f"{runtime}/metrics")[1], "adp_consumer_lag", task_type="code", lane="high")
            == 0
        )
        assert get(f"{aggregator}/health")[0] == 200

        node = kafka.nodes[0]
        kafka.stop_node(node, sig=9)

        def unhealthy() -> dict | None:
            status, body = get(f"{runtime}/health")
            return json.loads(body) if status == 503 else None

        down = wait_for(unhealthy, 60, "/health to report the broker down", check=rt.assert_alive)
        assert any("broker" in problem for problem in down["problems"])

        kafka.start_node(node)
        wait_for(
            lambda: get(f"{runtime}/health")[0] == 200,
            120,
            "/health to recover with the broker",
            check=rt.assert_alive,
        )
    finally:
        rt.stop()
        agg.stop()
