"""Trajectories and stub scripts the synthesis tests share (no broker, no process here)."""

from __future__ import annotations

import json
from typing import Any

from adp.schemas.contracts import Step, Trajectory, TrajectoryMetadata, Verdict

T0 = 1_790_000_000.0


def trajectory(
    task_id: str,
    description: str,
    observations: list[str],
    *,
    passed: bool | None = True,
    task_type: str = "code",
    task: dict[str, Any] | None = None,
    sample_index: int = 0,
) -> Trajectory:
    """A finished trajectory: one code step per observation, then the final answer. `passed`:
    the verdict (None: no verifier)."""
    steps = [
        Step(
            step_id=i + 1,
            action_type="code_execution",
            action_params={"code": f"print({text!r})"},
            observation=text,
            success=True,
            timestamp=T0 + i,
            duration=0.1,
        )
        for i, text in enumerate(observations)
    ]
    steps.append(
        Step(
            step_id=len(steps) + 1,
            action_type="final_answer",
            action_params={"answer": "done"},
            observation="",
            success=True,
            timestamp=T0 + len(steps),
            duration=0.0,
        )
    )
    verdict = (
        Verdict(verifier="")
        if passed is None
        else Verdict(verifier="answer", passed=passed, score=float(passed))
    )
    return Trajectory(
        task_id=task_id,
        task_type=task_type,
        description=description,
        sample_index=sample_index,
        success=bool(passed) if passed is not None else True,
        claimed_success=True,
        verification=verdict,
        steps=steps,
        final_result="done",
        total_duration=1.0,
        metadata=TrajectoryMetadata(
            runtime_id="r",
            attempt_id=f"a-{task_id}",
            started_at=T0,
            finished_at=T0 + 5,
            llm_calls=1,
            prompt_tokens=10,
            completion_tokens=5,
            cached_llm_calls=0,
            task=task or {"max_steps": 4, "timeout": 60, "priority": 5, "expected_tools": []},
        ),
    )


def proposal(
    atomic: list[tuple[str, Any]],
    depth: list[tuple[int, str, Any]] = (),
    width: list[tuple[int, int, str]] = (),
) -> str:
    """A proposal reply as a model would write it (in a code fence, with a word before)."""
    body = {
        "atomic": [{"question": q, "answer": a} for q, a in atomic],
        "depth": [{"uses": u, "question": q, "answer": a} for u, q, a in depth],
        "width": [{"fuses": [i, j], "question": q} for i, j, q in width],
    }
    return "Here you go:\n```json\n" + json.dumps(body) + "\n```"


def propose_rule(parent: str, reply: str) -> dict[str, Any]:
    """A stub rule answering the proposal for one parent task."""
    return {"match": f"^SYNTHESIZE TASKS\\nparent task: {parent}\\n", "replies": [reply]}


def knows(question_start: str, answer: str) -> dict[str, Any]:
    """A stub rule: the model answers this question right without tools."""
    return {
        "match": f"^ANSWER WITHOUT TOOLS\\n\\n{question_start}",
        "replies": [f"Easy. FINAL ANSWER: {answer}"],
    }


# every other tool check: the model cannot know
DOES_NOT_KNOW = {
    "match": "^ANSWER WITHOUT TOOLS",
    "replies": ["I cannot know that without running it.\nFINAL ANSWER: unknown"],
}
