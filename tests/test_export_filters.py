"""Which trajectories an export keeps: `--model` requires every LLM call to have used the model
(a trajectory that failed over to another one is left out, and says why), and trajectories given
up to an outage (error_type infrastructure) stay out unless asked for."""

from __future__ import annotations

from adp.connectors.export.select import Filters
from adp.schemas.contracts import LlmExchange, Step, Task, Trajectory
from adp.streams.aggregator.build import build_trajectory


def made(task_id: str, models: list[tuple[str, str]], error_type: str | None = None) -> Trajectory:
    steps = [
        Step(
            step_id=i,
            action_type="final_answer" if i == len(models) else "code_execution",
            action_params={},
            observation="",
            success=True,
            timestamp=1.8e9 + i,
            duration=0.1,
            llm=LlmExchange(provider=p, model=m, request={"messages": []}, response={}),
        ).model_dump(mode="json")
        for i, (p, m) in enumerate(models, 1)
    ]
    task = Task(task_id=task_id, task_type="code", description="d")
    return build_trajectory(
        "a",
        {"timestamp": 1.8e9, "runtime_id": "r", "task": task.model_dump(mode="json")},
        {
            "timestamp": 1.8e9 + 9,
            "runtime_id": "r",
            "finish": {
                "success": error_type is None,
                "final_result": "",
                "total_duration": 9.0,
                "step_count": len(steps),
                "error": "LLM endpoint unavailable" if error_type else None,
                "error_type": error_type,
            },
        },
        steps,
    )


def test_a_model_filter_requires_every_call_to_use_that_model():
    own = made("own", [("vllm", "qwen-7b"), ("vllm", "qwen-7b")])
    mixed = made("mixed", [("vllm", "qwen-7b"), ("local", "smollm2-135m-instruct")])
    other = made("other", [("local", "smollm2-135m-instruct")])
    assert mixed.metadata.models == ["vllm/qwen-7b", "local/smollm2-135m-instruct"]
    for pattern in ("qwen-7b", "qwen-*", "vllm/qwen-7b", "vllm/*"):
        keep = Filters(model=pattern)
        assert keep.why_not(own) is None, pattern
        assert keep.why_not(mixed) == "mixed models", pattern
        assert keep.why_not(other) == "another model", pattern
    assert Filters(model="*").why_not(made("none", [])) == "another model"  # no call at all


def test_infrastructure_failures_are_left_out_unless_asked_for():
    given_up = made("down", [("vllm", "qwen-7b")], error_type="infrastructure")
    agent_failed = made("max", [("vllm", "qwen-7b")], error_type="max_steps")
    assert Filters().why_not(given_up) == "infrastructure failure"
    assert Filters().why_not(agent_failed) is None  # the agent's own failure is data
    assert Filters(infrastructure=True).why_not(given_up) is None
    assert "infrastructure failures included" in Filters(infrastructure=True).describe()
