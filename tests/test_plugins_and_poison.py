"""Third-party runtimes register through the `adp.runtimes` entry-point group: these tests
install real plugin packages with pip and run tasks through them on the real broker. The crashy
plugin takes its process down on POISON tasks, proving that a poison task ends in adp.dlq while
every other task still gets its trajectory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic
from tests.helpers import ADP, AdpProcess, produce_file, trajectory_files, wait_for, write_tasks

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


def pip_install_target(package: Path, target: Path) -> str:
    """Install a plugin package into its own folder; returns a PYTHONPATH that sees it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
        timeout=300,
    )
    return f"{target}:{ROOT}"


def test_example_custom_runtime_runs_a_task(kafka, tmp_path):
    from adp.runtimes.llm.stub import StubServer

    pythonpath = pip_install_target(ROOT / "examples" / "custom_runtime", tmp_path / "site")
    script = [{"match": "six times seven", "replies": ["CALC: 6 * 7", "FINAL ANSWER: 42"]}]
    out = tmp_path / "out"
    with StubServer(script=script).in_thread() as llm_url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": llm_url,
            "ADP_LLM_MODEL": "stub",
            "PYTHONPATH": pythonpath,
            "ADP_METRICS_PORT": "0",
        }
        listed = subprocess.run(
            [*ADP, "runtime", "--help"], env={**os.environ, **env}, capture_output=True, text=True
        )
        assert "calc" in listed.stdout
        agg = AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start()
        rt = AdpProcess(["runtime", "calc"], tmp_path / "rt.log", env).start()
        try:
            produce_file(
                rt.env,
                write_tasks(
                    tmp_path / "t.jsonl",
                    [
                        {
                            "task_id": "plugin-calc-1",
                            "task_type": "reasoning",
                            "description": "What is six times seven?",
                        }
                    ],
                ),
            )
            wait_for(
                lambda: (out / "plugin-calc-1.json").exists(),
                120,
                "the plugin's trajectory",
                check=lambda: (rt.assert_alive(), agg.assert_alive()),
            )
        finally:
            rt.stop()
            agg.stop()
    t = json.loads((out / "plugin-calc-1.json").read_text())
    assert t["success"] and t["final_result"] == "42"
    calc, final = t["steps"]
    assert calc["action_type"] == "calculate" and calc["observation"] == "42"  # the real tool
    assert final["action_type"] == "final_answer"


def test_poison_task_goes_to_dlq_and_the_rest_complete(kafka, tmp_path):
    pythonpath = pip_install_target(ROOT / "tests" / "plugins" / "crashy", tmp_path / "site")
    env = {"ADP_BOOTSTRAP": kafka.bootstrap, "PYTHONPATH": pythonpath, "ADP_METRICS_PORT": "0"}
    out = tmp_path / "out"
    good = [f"poison-ok-{i}" for i in range(12)]
    tasks = [{"task_id": t, "task_type": "code", "description": f"fine {t}"} for t in good]
    tasks.insert(5, {"task_id": "poison-bad", "task_type": "code", "description": "POISON pill"})
    agg = AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start()
    runtimes: list[AdpProcess] = []

    def supervise() -> bool:
        """Act like a process supervisor: restart the runtime whenever it died."""
        agg.assert_alive()
        if not runtimes or not runtimes[-1].alive:
            assert len(runtimes) < 8, "runtime kept dying: the poison task was never isolated"
            runtimes.append(
                AdpProcess(
                    ["runtime", "crashy", "--concurrency", "4"],
                    tmp_path / f"rt-{len(runtimes)}.log",
                    env,
                ).start()
            )
        return all((out / f"{t}.json").exists() for t in good)

    try:

        def dead_lettered() -> list:
            return [
                r
                for r in asyncio.run(read_topic(kafka.bootstrap, topics.DLQ))
                if r.key == b"poison-bad"
            ]

        produce_file(agg.env, write_tasks(tmp_path / "t.jsonl", tasks))
        poisoned = wait_for(
            lambda: supervise() and dead_lettered(),
            300,
            "every good trajectory and the poison task in adp.dlq",
        )
    finally:
        for rt in runtimes:
            rt.stop()
        agg.stop()
    headers = dict(poisoned[0].headers)
    assert headers["adp-reason"].decode().startswith("poison")
    assert headers["adp-source-topic"] == b"adp.tasks.code"
    assert sorted(trajectory_files(out)) == sorted(good)  # no trajectory for the poison task
    assert len(runtimes) == 1 + 3  # it killed its process exactly poison_limit times
