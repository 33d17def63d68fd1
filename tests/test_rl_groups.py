"""The rollout bus on the real broker.

- A trainer process (tests/rl_trainer.py, adp.client's GroupStream) consuming groups whose
  samples arrive interleaved over the partitions is killed with SIGKILL mid-stream and started
  again: it gets every group, each once, but the one it held unacknowledged when it died.
- `adp groups` goes on where a run of its group committed; releases a group that cannot
  complete after its deadline, flagged; drops groups by --min-spread and --max-staleness.
- The whole pipeline (adp.client.submit -> `adp runtime code` -> `adp aggregate`) against the
  stub LLM with token ids on: groups of k samples with the policy version, whose token rows
  are what the stub sent, call by call; `adp export kafka --format tokens` loads with
  `datasets` and counts the calls whose chat template rewrote history; `adp status` has
  pass@k and the token-exact calls.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from adp.client import GroupStream, submit
from adp.schemas import codec
from adp.streams.kafka import clients
from adp.streams.kafka.topics import TRAJECTORIES
from tests.helpers import ADP, AdpProcess, scripted_stub, wait_for
from tests.test_groups_unit import sample
from tests.test_rl_export import stub_row

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


async def publish(bootstrap: str, trajectories) -> None:
    producer = await clients.start(clients.producer(bootstrap), bootstrap)
    try:
        for t in trajectories:
            await producer.send(TRAJECTORIES, codec.encode(t), key=t.key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def deliveries(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def adp(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*ADP, *args], capture_output=True, text=True, timeout=timeout)


def test_a_trainer_killed_mid_stream_gets_every_group_exactly_once(kafka, tmp_path):
    rng = random.Random(25)
    names = [f"kill-{g}" for g in range(40)]
    records = [sample(name, i, 4, passed=i % 2 == 0) for name in names for i in range(4)]
    rng.shuffle(records)
    asyncio.run(publish(kafka.bootstrap, records[:130]))  # about 17 groups complete
    log = tmp_path / "groups.jsonl"
    trainer = AdpProcess(
        [kafka.bootstrap, "killed", str(log), "0.1"],
        tmp_path / "trainer.log",
        command=[sys.executable, str(ROOT / "tests" / "rl_trainer.py")],
    ).start()
    try:
        wait_for(lambda: len(deliveries(log)) >= 5, 240, "5 groups", trainer.assert_alive)
        trainer.kill9()  # mid-stream: holding a group, or between two
        first = deliveries(log)
        asyncio.run(publish(kafka.bootstrap, records[130:]))
        trainer.start()
        wait_for(
            lambda: {d["group"] for d in deliveries(log)} >= set(names),
            180,
            "every group after the restart",
            trainer.assert_alive,
        )
    finally:
        trainer.stop()
    every = deliveries(log)
    second = every[len(first) :]
    assert 5 <= len(first) < len(names)
    assert all(d["samples"] == [0, 1, 2, 3] for d in every)  # whole groups only
    assert len({d["group"] for d in first}) == len(first)
    assert len({d["group"] for d in second}) == len(second)
    again = {d["group"] for d in first} & {d["group"] for d in second}
    # the only group that may come again is the one it was handed last before the kill
    assert again <= {first[-1]["group"]}, again
    assert sorted({d["group"] for d in every}) == sorted(names)
    # where the trainer committed is where the next run of its group starts: nothing is left
    # for it but the group it may have held when it was stopped (stopped while "training")
    done = adp("groups", "--group", "killed", "--json", "-b", kafka.bootstrap)
    assert done.returncode == 0, done.stderr
    left = [json.loads(line)["group"] for line in done.stdout.splitlines()]
    assert set(left) <= {every[-1]["group"]} and len(left) <= 1, left


def test_adp_groups_releases_late_groups_flagged_and_filters(kafka, tmp_path):
    records = [
        *(sample("late", i, 3) for i in (0, 1)),  # sample 2 never comes (it went to the DLQ)
        *(sample("flat", i, 2, passed=True) for i in range(2)),  # all passed: no spread
        *(sample("stale", i, 2, passed=i == 0, version=1) for i in range(2)),
        *(sample("useful", i, 2, passed=i == 0, version=4) for i in range(2)),
    ]
    asyncio.run(publish(kafka.bootstrap, records))
    time.sleep(1.5)  # past the one-second deadline of the run below
    args = ["--group", "filters", "--json", "--deadline", "1", "--min-spread", "0.5"]
    done = adp("groups", *args, "--policy-version", "5", "--max-staleness", "2")
    assert done.returncode == 0, done.stderr
    got = {g["group"]: g for g in map(json.loads, done.stdout.splitlines())}
    mine = {k: v for k, v in got.items() if k in ("late", "flat", "stale", "useful")}
    assert sorted(mine) == ["useful"], done.stdout + done.stderr  # late: no spread either
    assert mine["useful"]["rewards"] == [1.0, 0.0] and mine["useful"]["complete"]
    assert "rewards spread less than --min-spread" in done.stderr
    assert "policy older than --max-staleness versions" in done.stderr
    # without the spread filter the late group is there, flagged, with what it has
    late = adp("groups", "--group", "late", "--json", "--deadline", "1")
    groups = {g["group"]: g for g in map(json.loads, late.stdout.splitlines())}
    assert groups["late"]["complete"] is False and groups["late"]["missing"] == [2]
    assert [s["sample_index"] for s in groups["late"]["samples"]] == [0, 1]
    assert "incomplete" in late.stderr


# ---- the whole pipeline ----------------------------------------------------------------------

SCRIPT = [
    {"match": "exact", "replies": ["```python\nprint(6 * 7)\n```", "FINAL ANSWER: 42"]},
    # unscripted tasks get the default replies, whose first starts with "Thought:", which the
    # stub's rewrite-history template drops from the history of the next call
]
TASKS = [
    {"task_id": "exact-a", "task_type": "code", "description": "exact answer, please", "samples": 4,
     "verify": {"type": "answer", "match": "numeric", "expected": 42}},
    {"task_id": "exact-b", "task_type": "code", "description": "exact answer again", "samples": 2,
     "verify": {"type": "answer", "match": "numeric", "expected": 41}},
    {"task_id": "thinks", "task_type": "code", "description": "think first", "samples": 2,
     "verify": {"type": "answer", "match": "contains", "expected": "think"}},
]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(kafka, tmp_path_factory):
    work = tmp_path_factory.mktemp("rl-pipeline")
    (work / "stub").mkdir()
    with scripted_stub(SCRIPT, work / "stub", "--chat-template", "rewrite-history") as url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": url,
            "ADP_LLM_MODEL": "stub",
            "ADP_LLM_TOKENS": "on",
            "ADP_METRICS_PORT": "0",
            "ADP_HOME": str(work / "home"),
        }
        procs = [
            AdpProcess(["aggregate", "--out", str(work / "out")], work / "agg.log", env).start(),
            AdpProcess(["runtime", "code", "--concurrency", "4"], work / "code.log", env).start(),
        ]
        try:
            report = asyncio.run(submit(TASKS, policy_version=2, conf=kafka.bootstrap))
            assert report.total_sent == 8
            yield work, procs
        finally:
            for p in procs:
                p.stop()


async def collect(bootstrap: str, names: set[str], group: str, timeout: float = 300) -> dict:
    """The groups of `names`, consumed by the consumer group `group` (each acknowledged)."""
    got = {}
    async with GroupStream(bootstrap, group) as stream:
        async with asyncio.timeout(timeout):
            async for group in stream:
                if group.task_id in names:
                    got[group.task_id] = group
                stream.ack(group)
                if set(got) == names:
                    break
    return got


def test_groups_of_the_pipeline_carry_the_stubs_tokens_call_by_call(pipeline, kafka):
    groups = asyncio.run(collect(kafka.bootstrap, {"exact-a", "exact-b", "thinks"}, "trainer"))
    a, b, thinks = groups["exact-a"], groups["exact-b"], groups["thinks"]
    assert (len(a.samples), len(b.samples), len(thinks.samples)) == (4, 2, 2)
    assert all(g.complete and g.policy_version == 2 for g in groups.values())
    assert a.rewards == [1.0] * 4 and b.rewards == [0.0, 0.0]
    for s in [*a.ordered, *b.ordered]:
        assert s.trajectory.policy_version == 2
        [row] = s.tokens()
        ids, mask, lps = stub_row(s.trajectory, "rewrite-history")
        assert row["input_ids"] == ids and row["loss_mask"] == mask
        assert row["logprobs"] == pytest.approx(lps)
        assert row["num_calls"] == 2 and row["model_revision"] == "adp-stub"
    # the template dropped the first reply's "Thought:" line from the second call's history
    for s in thinks.ordered:
        rows = s.tokens()
        assert [r["segment"] for r in rows] == [0, 1]
        assert s.tokens("drop") == []


def test_the_tokens_export_and_status_of_the_pipeline(pipeline, kafka, tmp_path):
    asyncio.run(collect(kafka.bootstrap, {"exact-a", "exact-b", "thinks"}, "landed"))
    out = tmp_path / "tokens"
    done = adp("export", "kafka", "--format", "tokens", "--out", str(out), "--validation", "0",
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["drifts"] == 2 and facts["token_calls"] == facts["llm_calls"] == 16
    rows = datasets.load_dataset("parquet", data_dir=str(out))["train"]
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    assert sorted(k for k in by_key if k.startswith("exact")) == sorted(
        ["exact-a", "exact-a/1", "exact-a/2", "exact-a/3", "exact-b", "exact-b/1"]
    )
    assert [len(by_key[k]) for k in ("thinks", "thinks/1")] == [2, 2]
    assert (
        "2 calls whose prompt did not extend the previous prompt" in (out / "README.md").read_text()
    )
    status = json.loads(adp("status", "--json").stdout)
    code = next(r for r in status if r["task_type"] == "code")
    assert code["token_calls"] >= 16 and code["llm_calls"] >= 16
    assert code["pass_at_k"]["1"]["tasks"] >= 3  # with the other tests' judged samples
    # exact-a: 4 of 4, exact-b: 0 of 2, thinks: 2 of 2 ("think" is in what it printed)
    per_task = json.loads(adp("status", "--pass-at-k", "--json").stdout)
    assert per_task["tasks"]["exact-a"] == {"1": 1.0, "2": 1.0, "4": 1.0}
    assert per_task["tasks"]["exact-b"] == {"1": 0.0, "2": 0.0}
    assert per_task["tasks"]["thinks"] == {"1": 1.0, "2": 1.0}
    assert per_task["models"]["custom/stub"]["1"] == {"pass": pytest.approx(2 / 3), "tasks": 3}
    assert per_task["models"]["custom/stub"]["4"] == {"pass": 1.0, "tasks": 1}
    table = adp("status").stdout
    assert "pass@k model custom/stub: pass@1 0.67 (3 tasks)" in table
    assert "LLM calls with token ids:" in table


def test_the_readme_grpo_loop_gets_each_group_once_and_is_killed(pipeline, kafka, tmp_path):
    """examples/grpo_loop.py, the loop README shows, against the pipeline: it submits its
    five tasks with 4 samples, prints each complete group once, and SIGKILL ends it. (Runs after
    the tests above: its groups would change their counts.)"""
    out = tmp_path / "loop.out"
    env = {**_env_without_adp(), "ADP_BOOTSTRAP": kafka.bootstrap}
    with out.open("w") as sink:
        loop = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "grpo_loop.py")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(
            lambda: sum(line.startswith("sum-to-") for line in out.read_text().splitlines()) >= 5,
            300,
            "the loop's five groups",
            check=lambda: loop.poll() is None or pytest.fail(out.read_text()),
        )
    finally:
        loop.kill()
        loop.wait()
    lines = [line for line in out.read_text().splitlines() if line.startswith("sum-to-")]
    assert sorted(line.split(":")[0] for line in lines) == [
        f"sum-to-{n}" for n in (10, 20, 30, 40, 50)
    ]
    for line in lines:  # four samples each, every one with its generated tokens counted
        rewards = line.split("rewards ")[1].split("]")[0]
        assert rewards.count(",") == 3 and "incomplete" not in line, line
        tokens = line.split("generated tokens ")[1]
        assert all(int(n) > 0 for n in tokens.strip("[]").split(", ")), line


def _env_without_adp() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ADP_")}
