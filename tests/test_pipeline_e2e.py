"""End to end on the real broker: tasks.jsonl -> adp produce -> adp.tasks.code -> adp runtime
code (real bubblewrap, stub LLM over HTTP) -> adp.steps -> adp aggregate -> trajectory files."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ADP, AdpProcess, trajectory_files, wait_for, write_tasks

pytestmark = pytest.mark.kafka

N_TASKS = 20


def test_twenty_code_tasks_become_twenty_trajectories(kafka, llm_stub, tmp_path):
    out = tmp_path / "trajectories"
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(tmp_path / "home"),
    }
    ids = [f"e2e-code-{i:02d}" for i in range(N_TASKS)]
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {
                "task_id": t,
                "task_type": "code",
                "description": f"Print the number {i} squared.",
                "max_steps": 4,
                "timeout": 60,
            }
            for i, t in enumerate(ids)
        ],
    )
    aggregator = AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start()
    runtime = AdpProcess(
        ["runtime", "code", "--concurrency", "4"], tmp_path / "rt.log", env
    ).start()
    try:
        produced = subprocess.run(
            [*ADP, "produce", "--quiet", str(tasks)],
            env={**runtime.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr

        def all_written():
            return len(list(out.glob("e2e-code-*.json"))) >= N_TASKS if out.exists() else False

        def both_alive():
            aggregator.assert_alive()
            runtime.assert_alive()

        wait_for(all_written, 240, f"{N_TASKS} trajectory files", check=both_alive)
    finally:
        runtime.stop()
        aggregator.stop()

    files = trajectory_files(out)
    assert sorted(files) == ids  # exactly these, nothing else
    for task_id, t in files.items():
        assert t["task_id"] == task_id and t["task_type"] == "code"
        assert t["success"] is True, t
        steps = t["steps"]
        assert [s["step_id"] for s in steps] == list(range(1, len(steps) + 1))
        # the stub's unscripted script: one print, then the final answer
        assert [s["action_type"] for s in steps] == ["code_execution", "final_answer"]
        run, final = steps
        # the observation is what the program really prints, run again outside the sandbox
        real = subprocess.run(
            ["python3", "-c", run["action_params"]["code"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run["observation"] == real.stdout and run["success"] is True
        assert t["final_result"] == real.stdout.strip()
        assert run["llm"]["provider"] and run["llm"]["request"]["messages"][1]["content"] == (
            f"Print the number {ids.index(task_id)} squared."
        )
        assert run["llm"]["response"]["choices"][0]["message"]["content"]
        assert run["llm"]["prompt_tokens"] > 0 and run["llm"]["completion_tokens"] > 0
        assert final["observation"] == ""  # no tool ran: nothing is invented
        meta = t["metadata"]
        assert meta["attempt_id"] and meta["runtime_id"].startswith("code-")
        assert meta["llm_calls"] == 2


def test_web_and_reasoning_tasks_end_to_end(kafka, llm_stub, site, tmp_path):
    """Real Chromium on the shipped site and the real sandbox, through Kafka, to files."""
    out = tmp_path / "trajectories"
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_METRICS_PORT": "0",
    }
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {
                "task_id": "e2e-web-0",
                "task_type": "web",
                "description": "What does the shop sell?",
                "constraints": {"start_url": site},
                "timeout": 120,
            },
            {
                "task_id": "e2e-web-1",
                "task_type": "web",
                "description": "Open the last list page.",
                "constraints": {"start_url": site + "list/page3.html"},
                "timeout": 120,
            },
            {
                "task_id": "e2e-reasoning-0",
                "task_type": "reasoning",
                "description": "Compute 6 times 7 with Python.",
                "timeout": 120,
            },
        ],
    )
    procs = [
        AdpProcess(args, tmp_path / f"{args[0]}-{args[-1]}.log", env).start()
        for args in (["aggregate", "--out", str(out)], ["runtime", "web"], ["runtime", "reasoning"])
    ]
    try:
        produced = subprocess.run(
            [*ADP, "produce", "--quiet", str(tasks)],
            env=procs[0].env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr
        wait_for(
            lambda: len(list(out.glob("e2e-*.json"))) >= 3 if out.exists() else False,
            240,
            "3 trajectories",
            check=lambda: [p.assert_alive() for p in procs],
        )
    finally:
        for p in procs:
            p.stop()
    files = trajectory_files(out)
    for task_id in ("e2e-web-0", "e2e-web-1"):
        goto, read, final = files[task_id]["steps"]
        # the start page is opened before the first LLM call, and is the first observation
        assert goto["action_type"] == "goto" and goto["llm"] is None
        assert "ADP Test Shop" in goto["observation"] or "Shop code" in goto["observation"]
        assert read["action_type"] == "read_page" and read["llm"]["request"]["tools"]
        assert final["action_type"] == "final_answer" and files[task_id]["success"]
    assert "ZEBRA-42" in files["e2e-web-1"]["steps"][0]["observation"]
    python, final = files["e2e-reasoning-0"]["steps"]
    real = subprocess.run(
        ["python3", "-c", python["action_params"]["code"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert python["action_type"] == "python" and python["observation"] == real.stdout
    assert final["action_type"] == "final_answer"
