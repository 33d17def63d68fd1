"""The Trajectory of one complete attempt, built from the JSON-mode parts the assembler recorded
(its started and finished events and its steps): the seed's format, extended with the verdict,
samples, token and cost totals and the models used. Pure: the assembler (and so the aggregator
and replay) call it, and tests build trajectories with it."""

from __future__ import annotations

from adp.schemas.contracts import UNVERIFIED, Trajectory, Verdict

# what a trajectory's metadata.task keeps of its task (the rest is top-level in the trajectory)
TASK_METADATA = (
    "max_steps",
    "timeout",
    "priority",
    "expected_tools",
    "constraints",
    "metadata",
    "verify",
    "samples",
    "temperature",
    "seed",
)


def verified_success(claimed: bool, verdict: Verdict) -> bool:
    """A trajectory's `success`: the verdict where the task names a verifier (False when it
    could not run: never a pass by default), else the agent's own claim."""
    return verdict.passed is True if verdict.verifier else claimed


def build_trajectory(
    attempt_id: str, started: dict, finished: dict, steps: list[dict]
) -> Trajectory:
    """The Trajectory of one complete attempt, from its recorded (JSON-mode) parts."""
    task, finish = started["task"], finished["finish"]
    exchanges = [s["llm"] for s in steps if s.get("llm")]
    verdict = finish.get("verdict") or UNVERIFIED.as_json()
    costs = [e["cost_usd"] for e in exchanges if e.get("cost_usd") is not None]
    doc = {
        "task_id": task["task_id"],
        "task_type": task["task_type"],
        "description": task["description"],
        "policy_version": task.get("policy_version"),
        "sample_index": task.get("sample_index", 0),
        "success": verified_success(finish["success"], Verdict.model_validate(verdict)),
        "claimed_success": finish["success"],
        "verification": verdict,
        "steps": steps,
        "final_result": finish["final_result"],
        "total_duration": finish["total_duration"],
        "metadata": {
            "runtime_id": started["runtime_id"],
            "attempt_id": attempt_id,
            "error": finish.get("error"),
            "error_type": finish.get("error_type"),
            "started_at": started["timestamp"],
            "finished_at": finished["timestamp"],
            "llm_calls": len(exchanges),
            "prompt_tokens": sum(e["prompt_tokens"] for e in exchanges),
            "completion_tokens": sum(e["completion_tokens"] for e in exchanges),
            "cached_llm_calls": sum(1 for e in exchanges if e.get("cached")),
            "task": {k: task.get(k) for k in TASK_METADATA},
            "cost_usd": sum(costs) if costs else None,
            # dict: insertion-ordered and unique, so the models in order of first use
            "models": list(dict.fromkeys(f"{e['provider']}/{e['model']}" for e in exchanges)),
        },
    }
    trajectory = Trajectory.model_validate(doc)
    # doc is what model_dump(mode="json") would give (the parts are JSON-mode, in field order:
    # tests/test_assembly.py checks it), so encode and render skip dumping it again
    trajectory.keep_json(doc)
    return trajectory
