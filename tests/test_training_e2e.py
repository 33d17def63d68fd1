"""Training-ready trajectories on the real broker, one batch through the whole pipeline:
adp produce -> two `adp runtime code` processes and one `adp runtime reasoning` (real sandbox,
the scripted stub LLM over HTTP, which answers some tasks right and some wrong and also plays
the judge) -> adp aggregate -> files. Then:

- every verdict is exactly the expected one (passed, failed, could not run, unverified), the
  agent's claim kept apart;
- a task with samples: 4 gives 4 trajectories with their own sample index, seed and key, run by
  both runtimes of the group;
- `adp status` counts verdicts, tokens and cost, which the price table (ADP_PRICES) priced;
- `adp verify kafka` with a changed spec publishes new verdicts that the running aggregator
  writes, and the steps stay as they were;
- the exports load with `datasets` / pyarrow (tests/test_export.py shares this batch).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ADP, AdpProcess, scripted_stub, wait_for, write_tasks

pytestmark = pytest.mark.kafka

FACTORIAL = (
    "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\nprint(factorial(5))\n"
)
SCRIPT = [
    # the judge (its prompt starts with TASK:)
    {"match": "^TASK:\\n.*unjudgeable", "replies": ["Hard to say, really."]},
    {
        "match": "^TASK:\\n(.|\\n)*FINAL ANSWER:\\nNeil Armstrong",
        "replies": ['{"pass": true, "score": 1.0, "reason": "names Neil Armstrong"}'],
    },
    {"match": "^TASK:\\n", "replies": ['{"pass": false, "score": 0.0, "reason": "wrong person"}']},
    # the agents
    {
        "match": "factorial of 5 \\(right\\)",
        "replies": ["```python\nimport math\nprint(math.factorial(5))\n```", "FINAL ANSWER: 120"],
    },
    {
        "match": "factorial of 5 \\(wrong\\)",
        "replies": ["```python\nprint(5 * 4 * 3 * 2)\n```", "FINAL ANSWER: 121"],
    },
    {"match": "factorial function", "replies": [f"```python\n{FACTORIAL}```", "FINAL ANSWER: 120"]},
    {"match": "moon \\(a\\)", "replies": ["FINAL ANSWER: Neil Armstrong"]},
    {"match": "moon \\(b\\)", "replies": ["FINAL ANSWER: Yuri Gagarin"]},
    {"match": "unjudgeable", "replies": ["FINAL ANSWER: maybe"]},
]
NUMERIC_120 = {"type": "answer", "match": "numeric", "expected": 120}
MOON_JUDGE = {
    "type": "judge",
    "rubric": "Names the first person to walk on the moon.",
    "expected": "Neil Armstrong",
}
TASKS = [
    {
        "task_id": "fact-right",
        "task_type": "code",
        "description": "The factorial of 5 (right).",
        "verify": NUMERIC_120,
    },
    {
        "task_id": "fact-wrong",
        "task_type": "code",
        "description": "The factorial of 5 (wrong).",
        "verify": NUMERIC_120,
    },
    {
        "task_id": "fact-tests",
        "task_type": "code",
        "description": "Write a factorial function.",
        "verify": {
            "type": "python",
            "tests": "def test_six():\n    assert solution.factorial(6) "
            "== 720\n\ndef test_printed():\n    assert output.strip() == '120'\n",
        },
    },
    {"task_id": "plain", "task_type": "code", "description": "Print hello."},
    {
        "task_id": "grpo",
        "task_type": "code",
        "description": "grpo sample task",
        "samples": 4,
        "seed": 100,
        "verify": {"match": "contains", "expected": "grpo"},
    },
    {
        "task_id": "moon-a",
        "task_type": "reasoning",
        "description": "Who first walked on the moon (a)?",
        "verify": MOON_JUDGE,
    },
    {
        "task_id": "moon-b",
        "task_type": "reasoning",
        "description": "Who first walked on the moon (b)?",
        "verify": MOON_JUDGE,
    },
    {
        "task_id": "unjudgeable",
        "task_type": "reasoning",
        "description": "An unjudgeable question.",
        "verify": {"type": "judge", "rubric": "Is it right?"},
    },
]
KEYS = [
    "fact-right",
    "fact-wrong",
    "fact-tests",
    "plain",
    "grpo",
    "grpo/1",
    "grpo/2",
    "grpo/3",
    "moon-a",
    "moon-b",
    "unjudgeable",
]
PRICES = {"custom/stub": {"input": 1.0, "output": 3.0}}


@dataclass
class Batch:
    out: Path
    env: dict[str, str]
    workdir: Path
    aggregator: AdpProcess
    runtimes: list[AdpProcess]

    def files(self) -> dict[str, dict]:
        return {
            str(p.relative_to(self.out))[:-5]: json.loads(p.read_text())
            for p in self.out.rglob("*.json")
            if not p.name.startswith(".")
        }

    def adp(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*ADP, *args], env=self.aggregator.env, capture_output=True, text=True, timeout=timeout
        )

    def check(self) -> None:
        for p in (self.aggregator, *self.runtimes):
            p.assert_alive()


def code_partitions(runtime) -> set[int]:
    """The adp.tasks.code partitions a runtime's latest assignment gave it (its log's last
    "assigned [...]" line: every rebalance assigns afresh)."""
    lines = [line for line in runtime.log(lines=400).splitlines() if " assigned [" in line]
    return (
        {int(p) for p in re.findall(r"'adp\.tasks\.code\[(\d+)\]'", lines[-1])} if lines else set()
    )


def both_code_runtimes_own_partitions(batch: Batch) -> bool:
    """Both code runtimes hold task partitions of the same, settled assignment (disjoint: the
    first one's assignment from before the second joined would overlap it)."""
    one, two = (code_partitions(r) for r in batch.runtimes[:2])
    return bool(one) and bool(two) and not one & two


@pytest.fixture(scope="module")
def batch(kafka, tmp_path_factory) -> Batch:
    workdir = tmp_path_factory.mktemp("training")
    prices = workdir / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with scripted_stub(SCRIPT, workdir) as url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": url,
            "ADP_LLM_MODEL": "stub",
            "ADP_METRICS_PORT": "0",
            "ADP_PRICES": str(prices),
            "ADP_HOME": str(workdir / "home"),
        }
        out = workdir / "trajectories"
        aggregator = AdpProcess(["aggregate", "--out", str(out)], workdir / "agg.log", env).start()
        runtimes = [
            AdpProcess(
                ["runtime", kind, "--runtime-id", f"{kind}-{i}"], workdir / f"{kind}-{i}.log", env
            ).start()
            for kind, i in (("code", 1), ("code", 2), ("reasoning", 1))
        ]
        b = Batch(out, aggregator.env, workdir, aggregator, runtimes)
        try:
            # both code runtimes own partitions before anything is produced: samples spread
            wait_for(
                lambda: both_code_runtimes_own_partitions(b),
                120,
                "both code runtimes to own adp.tasks.code partitions",
                b.check,
            )
            produced = b.adp("produce", "--quiet", str(write_tasks(workdir / "tasks.jsonl", TASKS)))
            assert produced.returncode == 0, produced.stdout + produced.stderr
            wait_for(
                lambda: sorted(b.files()) == sorted(KEYS), 300, f"{len(KEYS)} trajectories", b.check
            )
            yield b
        finally:
            for p in (*runtimes, aggregator):
                p.stop()


EXPECTED = {  # key: (success, claimed_success, verdict status, verifier)
    "fact-right": (True, True, "passed", "answer"),
    "fact-wrong": (False, True, "failed", "answer"),
    "fact-tests": (True, True, "passed", "python"),
    "plain": (True, True, "unverified", ""),
    "moon-a": (True, True, "passed", "judge"),
    "moon-b": (False, True, "failed", "judge"),
    "unjudgeable": (False, True, "error", "judge"),
    **{k: (True, True, "passed", "answer") for k in ("grpo", "grpo/1", "grpo/2", "grpo/3")},
}


def status(t: dict) -> str:
    v = t["verification"]
    return (
        "unverified"
        if not v["verifier"]
        else ("error" if v["passed"] is None else "passed" if v["passed"] else "failed")
    )


def test_each_trajectory_has_exactly_the_right_verdict(batch):
    files = batch.files()
    got = {
        k: (t["success"], t["claimed_success"], status(t), t["verification"]["verifier"])
        for k, t in files.items()
    }
    assert got == EXPECTED
    wrong = files["fact-wrong"]["verification"]
    assert wrong["details"].startswith("expected 120") and "121" in wrong["details"]
    assert wrong["spec"] == NUMERIC_120 and wrong["llm"] is None
    assert files["fact-tests"]["verification"]["details"] == "2/2 tests passed"
    judge = files["moon-b"]["verification"]
    assert judge["details"] == "wrong person" and judge["score"] == 0.0
    # the judge's raw exchange is recorded like a step's, through the same provider chain
    assert judge["llm"]["provider"] == "custom"
    assert "Yuri Gagarin" in judge["llm"]["request"]["messages"][1]["content"]
    assert "holds no grade" in files["unjudgeable"]["verification"]["error"]
    # the agent's own steps carry no trace of verification
    assert [s["action_type"] for s in files["moon-a"]["steps"]] == ["final_answer"]


def test_k_samples_are_k_independent_trajectories_spread_over_the_group(batch, kafka):
    import asyncio

    from adp.streams.kafka.reader import read_topic

    files = batch.files()
    samples = [files[k] for k in ("grpo", "grpo/1", "grpo/2", "grpo/3")]
    assert [t["sample_index"] for t in samples] == [0, 1, 2, 3]
    assert {t["task_id"] for t in samples} == {"grpo"}
    assert len({t["metadata"]["attempt_id"] for t in samples}) == 4
    for t in samples:
        request = t["steps"][0]["llm"]["request"]
        assert request["seed"] == 100 + t["sample_index"] and request["temperature"] == 1.0
        assert t["metadata"]["task"]["samples"] == 4
    # one task record per sample, keyed apart, on more than one partition, run by both runtimes
    records = [
        r
        for r in asyncio.run(read_topic(kafka.bootstrap, "adp.tasks.code"))
        if r.key.decode().split("/")[0] == "grpo"
    ]
    assert sorted(r.key.decode() for r in records) == ["grpo", "grpo/1", "grpo/2", "grpo/3"]
    assert len({r.partition for r in records}) > 1
    assert {t["metadata"]["runtime_id"] for t in samples} == {"code-1", "code-2"}
    # the compacted topic keeps the four apart too
    published = asyncio.run(read_topic(kafka.bootstrap, "adp.trajectories"))
    assert {r.key.decode() for r in published} >= {"grpo", "grpo/1", "grpo/2", "grpo/3"}


def test_status_counts_verdicts_tokens_and_cost(batch):
    rows = {r["task_type"]: r for r in json.loads(batch.adp("status", "--json").stdout)}
    code, reasoning = rows["code"], rows["reasoning"]
    assert (code["finished"], code["verified"], code["checked"], code["unverified"]) == (8, 6, 7, 1)
    assert (reasoning["verified"], reasoning["checked"], reasoning["unverifiable"]) == (1, 2, 1)
    files = batch.files()
    for kind, row in rows.items():
        mine = [t for t in files.values() if t["task_type"] == kind]
        assert row["prompt_tokens"] == sum(t["metadata"]["prompt_tokens"] for t in mine)
        if mine:
            # priced at 1 and 3 USD per million tokens, every call of the stub
            expected = sum(
                (t["metadata"]["prompt_tokens"] + 3 * t["metadata"]["completion_tokens"]) / 1e6
                for t in mine
            )
            assert row["cost_usd"] == pytest.approx(expected) and expected > 0
    table = batch.adp("status")
    assert "verdicts: 7 passed, 2 failed, 1 could not be verified, 1 unverified" in " ".join(
        table.stdout.split()
    )


def test_exports_from_the_topic_load_with_datasets(batch):
    import datasets

    from tests.test_export import check_chat

    out = batch.workdir / "export"
    done = batch.adp(
        "export",
        "kafka",
        "--format",
        "parquet",
        "--out",
        str(out / "parquet"),
        "--validation",
        "0",
        "--no-dedup",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    table = datasets.load_dataset("parquet", data_dir=str(out / "parquet"))["train"]
    assert sorted(table["key"]) == sorted(KEYS)
    assert {r["key"]: r["verdict"] for r in table} == {k: v[2] for k, v in EXPECTED.items()}
    assert sum(c for c in table["cost_usd"]) == pytest.approx(
        sum(t["metadata"]["cost_usd"] for t in batch.files().values())
    )
    verified = batch.adp(
        "export",
        "kafka",
        "--format",
        "chat",
        "--out",
        str(out / "chat"),
        "--verified-only",
        "--validation",
        "0",
        "--json",
    )
    facts = json.loads(verified.stdout)
    # 7 verified; the four samples of grpo said the same thing: one of them is kept
    assert facts["filtered"] == {"not verified": 4} and facts["duplicates"] == 3
    rows = [json.loads(x) for x in (out / "chat" / "train.jsonl").read_text().splitlines()]
    for row in rows:
        check_chat(row)
    assert facts["trajectories"] == {"train": 4} and len(rows) == 4
    card = (out / "chat" / "README.md").read_text()
    assert "Verified rate overall: 100% (4/4)" in card and "provider `custom`" in card


def test_adp_verify_on_the_topic_changes_verdicts_never_steps(batch):
    before = batch.files()
    done = batch.adp(
        "verify",
        "kafka",
        "--type",
        "code",
        "--spec",
        json.dumps({"type": "answer", "match": "numeric", "expected": 121}),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["read"] == len(KEYS) and summary["left_alone"] == 3
    # the running aggregator's sink agent writes what adp verify published
    wait_for(
        lambda: batch.files()["fact-wrong"]["success"] is True,
        120,
        "the new verdict of fact-wrong in its file",
        batch.check,
    )
    wait_for(
        lambda: batch.files()["fact-right"]["success"] is False,
        60,
        "the new verdict of fact-right",
        batch.check,
    )
    after = batch.files()
    for key in KEYS:
        assert after[key]["steps"] == before[key]["steps"]
        assert after[key]["final_result"] == before[key]["final_result"]
        assert after[key]["claimed_success"] is True
    assert after["moon-a"] == before["moon-a"]  # not a code task: untouched
