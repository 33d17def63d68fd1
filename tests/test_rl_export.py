"""Training data for RL, without a broker: pass@k against a brute force count, token rows built
from recorded ids (never re-tokenized), and `adp export --format tokens` (a real process) on
trajectories of the real agent loop whose LLM calls went to the stub over HTTP: every row's
ids, mask and logprobs are what the stub sent, call by call; a chat template that rewrites
history is split or dropped and counted; --pass-rate keeps learnable tasks; ATIF carries the
ids in its v1.4 fields."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
from pathlib import Path

import datasets
import jsonschema
import pytest

from adp.connectors.export.atif import SCHEMA_FILE
from adp.connectors.export.passk import PassTable, k_values, pass_at_k
from adp.connectors.export.tokens import token_sequences
from adp.connectors.sinks.base import render
from adp.connectors.sinks.file import write_atomic
from adp.runtimes.base import RuntimeContext
from adp.runtimes.code import CodeRuntime
from adp.runtimes.llm import stub_tokens
from adp.runtimes.llm.stub import StubServer
from adp.runtimes.llm.tokens import TokenCapture
from adp.runtimes.tools.sandbox.bwrap import sandbox_available
from adp.schemas.contracts import LlmExchange, Step, Task, Trajectory, Verdict
from adp.schemas.conversation import with_full_requests
from tests.helpers import ADP, client
from tests.test_export import run, trajectory

# ---- pass@k --------------------------------------------------------------------------------------


def brute_pass_at_k(outcomes: list[bool], k: int) -> float:
    """The share of all k-subsets of the samples that hold a pass."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_a_brute_force_count_on_random_data():
    rng = random.Random(25)
    for _ in range(300):
        n = rng.randint(1, 10)
        outcomes = [rng.random() < rng.random() for _ in range(n)]
        for k in range(1, n + 1):
            assert pass_at_k(n, sum(outcomes), k) == pytest.approx(brute_pass_at_k(outcomes, k))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_the_table_averages_per_type_and_model_over_tasks_with_enough_samples():
    table = PassTable()
    for passed in (True, False, False, False):  # a: 1 of 4
        table.add("a", "code", "custom/m1", "passed" if passed else "failed")
    table.add("b", "code", "custom/m2", "passed")  # b: 1 of 1
    table.add("b", "code", "custom/m2", "unverified")  # not judged: not a sample of n
    report = table.report("type")["code"]
    assert k_values(4) == [1, 2, 4] and list(report) == ["1", "2", "4"]
    assert report["1"] == {"pass": pytest.approx((0.25 + 1.0) / 2), "tasks": 2}
    assert report["4"] == {"pass": 1.0, "tasks": 1}
    assert table.report("model")["custom/m2"] == {"1": {"pass": 1.0, "tasks": 1}}
    assert table.per_task()["a"]["2"] == pytest.approx(0.5)
    assert (table.rate("a"), table.rate("b"), table.rate("c")) == (0.25, 1.0, None)


# ---- token rows from recorded ids ----------------------------------------------------------------


def ex(prompt: list[int], completion: list[int], logprobs: list[float] | None = None):
    return LlmExchange(
        provider="vllm",
        model="m",
        request={},
        response={},
        prompt_token_ids=prompt,
        completion_token_ids=completion,
        completion_logprobs=[-0.5] * len(completion) if logprobs is None else logprobs,
    )


def with_calls(*calls: LlmExchange) -> Trajectory:
    steps = [
        Step(
            step_id=i,
            action_type="x",
            action_params={},
            observation="",
            success=True,
            timestamp=0.0,
            duration=0.0,
            llm=c,
        )
        for i, c in enumerate(calls, 1)
    ]
    return Trajectory.model_validate(
        {
            "task_id": "t",
            "task_type": "code",
            "description": "d",
            "success": True,
            "steps": [s.model_dump() for s in steps],
            "final_result": "",
            "total_duration": 0.0,
            "metadata": {
                "runtime_id": "r",
                "attempt_id": "a",
                "started_at": 0.0,
                "finished_at": 0.0,
                "llm_calls": len(calls),
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_llm_calls": 0,
                "task": {},
            },
        }
    )


def test_calls_that_extend_each_other_make_one_row_masked_on_what_was_generated():
    t = with_calls(ex([1, 2], [3, 4], [-0.1, -0.2]), ex([1, 2, 3, 4, 9, 9], [5], [-0.3]))
    [row] = token_sequences(t).rows
    assert row.input_ids == [1, 2, 3, 4, 9, 9, 5]
    assert row.loss_mask == [0, 0, 1, 1, 0, 0, 1]
    assert row.logprobs == [0.0, 0.0, -0.1, -0.2, 0.0, 0.0, -0.3] and row.calls == 2


def test_a_rewritten_history_is_split_or_dropped_and_counted_never_glued():
    calls = (ex([1, 2], [3]), ex([1, 2, 3, 7], [4]), ex([1, 8, 4], [5]), ex([1, 8, 4, 5], [6]))
    split = token_sequences(with_calls(*calls), "split")
    assert split.drifts == 1 and [r.segment for r in split.rows] == [0, 1]
    assert split.rows[0].input_ids == [1, 2, 3, 7, 4]
    assert split.rows[1].input_ids == [1, 8, 4, 5, 6] and split.rows[1].loss_mask == [0, 0, 0, 1, 1]
    dropped = token_sequences(with_calls(*calls), "drop")
    assert dropped.drifts == 1 and dropped.rows == []


def test_a_call_without_ids_leaves_the_trajectory_without_rows():
    t = with_calls(ex([1], [2]), ex([], []))
    seqs = token_sequences(t)
    assert not seqs.complete and seqs.rows == [] and (seqs.calls, seqs.with_ids) == (2, 1)
    # ids without logprobs: NaN where the model generated, counted
    [row] = token_sequences(with_calls(ex([1], [2, 3], []))).rows
    assert row.logprobs[0] == 0.0 and all(math.isnan(x) for x in row.logprobs[1:])


# ---- the export of real agent trajectories -------------------------------------------------------

needs_sandbox = pytest.mark.skipif(
    sandbox_available() is not None, reason=f"bubblewrap unusable: {sandbox_available()}"
)


async def agent_trajectories(template: str, out: Path) -> list[Trajectory]:
    """Code tasks run by the real code runtime (text protocol: reply 0 starts with
    "Thought:", then a program, then the final answer) against the stub with token ids on:
    task `grpo` with 4 samples (2 pass), `easy` with 2 (both pass)."""
    made = []
    async with StubServer(template=template) as stub:
        model = client(stub.base_url)
        model.tokens = TokenCapture("on")
        code = CodeRuntime(RuntimeContext("test-code", model))
        for task_id, k, passes in (("grpo", 4, {0, 2}), ("easy", 2, {0, 1})):
            for i in range(k):
                task = Task(
                    task_id=task_id,
                    task_type="code",
                    description=f"print the {task_id}",
                    samples=k,
                    sample_index=i,
                    policy_version=3,
                )
                outcome, steps = await run(code, task)
                verdict = Verdict(verifier="answer", passed=i in passes, score=float(i in passes))
                made.append(trajectory(task, steps, outcome, verdict))
        await model.aclose()
    for t in made:
        write_atomic(out / f"{t.key}.json", render(t))
    return made


def export(folder: Path, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [*ADP, "export", str(folder), "--out", str(out), "--json", "--validation", "0", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stub_row(t: Trajectory, template: str = "plain") -> tuple[list[int], list[int], list[float]]:
    """What the stub sent for t's calls, recomputed from each request as it was sent (rebuilt
    whole where it is stored as what it adds to an earlier one)."""
    t = with_full_requests(t)
    ids: list[int] = []
    mask: list[int] = []
    lps: list[float] = []
    for step in t.steps:
        prompt = stub_tokens.prompt_ids(step.llm.request["messages"], template)
        assert prompt[: len(ids)] == ids  # the plain template extends, call after call
        message = step.llm.response["choices"][0]["message"]
        completion = stub_tokens.completion_ids(message)
        assert step.llm.prompt_token_ids == prompt  # recorded as sent
        ids += prompt[len(ids) :] + completion
        mask += [0] * (len(prompt) - len(mask)) + [1] * len(completion)
        lps += [0.0] * (len(prompt) - len(lps))
        lps += [stub_tokens.logprob(c, i) for i, c in enumerate(completion)]
    return ids, mask, lps


@needs_sandbox
async def test_token_rows_are_what_the_stub_sent_call_by_call(tmp_path):
    made = await agent_trajectories("plain", tmp_path / "in")
    facts = export(tmp_path / "in", tmp_path / "tokens", "--format", "tokens")
    assert facts["trajectories"] == {"train": 6} and facts["token_calls"] == facts["llm_calls"]
    rows = {
        r["key"]: r
        for r in datasets.load_dataset("parquet", data_dir=str(tmp_path / "tokens"))["train"]
    }
    assert sorted(rows) == sorted(t.key for t in made)
    for t in made:
        row = rows[t.key]
        ids, mask, lps = stub_row(t)
        assert row["input_ids"] == ids and row["loss_mask"] == mask
        assert row["logprobs"] == pytest.approx(lps, abs=1e-6)  # float32 on disk
        assert row["num_calls"] == len(t.steps) == 2 and row["segment"] == 0
        assert (row["group"], row["policy_version"]) == (t.task_id, 3)
        assert row["reward"] == t.verification.score
    card = (tmp_path / "tokens" / "README.md").read_text()
    assert "LLM calls with token ids: 100% (12/12)" in card
    assert "- code: pass@1 0.75 (2 tasks), pass@2 0.92 (2 tasks), pass@4 1.00 (1 task)" in card
    assert "path: train.parquet" in card
    # --pass-rate: grpo passed 2 of 4 (learnable), easy 2 of 2 (always solved)
    learnable = export(
        tmp_path / "in", tmp_path / "learnable", "--format", "tokens", "--pass-rate", "0.2:0.8"
    )
    assert learnable["trajectories"] == {"train": 4}
    assert learnable["filtered"] == {"pass rate outside --pass-rate": 2}
    # ATIF v1.4 carries the ids in each agent step's metrics
    export(tmp_path / "in", tmp_path / "atif", "--format", "atif", "--no-dedup")
    doc = json.loads((tmp_path / "atif" / "train" / "grpo.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    agent = [s for s in doc["steps"] if s["source"] == "agent"]
    grpo = next(t for t in made if t.key == "grpo")
    for step, atif in zip(grpo.steps, agent):
        assert atif["metrics"]["prompt_token_ids"] == step.llm.prompt_token_ids
        assert atif["metrics"]["completion_token_ids"] == step.llm.completion_token_ids
        assert atif["metrics"]["logprobs"] == step.llm.completion_logprobs


@needs_sandbox
async def test_a_drifting_chat_template_is_split_or_dropped_and_counted(tmp_path):
    made = await agent_trajectories("rewrite-history", tmp_path / "in")
    split = export(tmp_path / "in", tmp_path / "split", "--format", "tokens")
    # each trajectory's second prompt lost the first reply's "Thought:" line: two rows each
    assert split["drifts"] == len(made) and split["rows"] == {"train": 2 * len(made)}
    rows = datasets.load_dataset("parquet", data_dir=str(tmp_path / "split"))["train"]
    first = [r for r in rows if r["key"] == "grpo"]
    assert sorted(r["segment"] for r in first) == [0, 1]
    grpo = next(t for t in made if t.key == "grpo")
    second = next(r for r in first if r["segment"] == 1)
    assert second["input_ids"][: len(grpo.steps[1].llm.prompt_token_ids)] == (
        grpo.steps[1].llm.prompt_token_ids
    )
    card = (tmp_path / "split" / "README.md").read_text()
    assert f"{len(made)} calls whose prompt did not extend the previous prompt" in card
    dropped = export(tmp_path / "in", tmp_path / "drop", "--format", "tokens", "--on-drift", "drop")
    assert dropped["trajectories"] == {} and dropped["drifts"] == len(made)
    assert dropped["left_out"] == {"a chat template rewrote history (--on-drift drop)": len(made)}
