"""Trajectories and stub scripts the synthesis tests share (no broker, no process here)."""

from __future__ import annotations

import json
import re
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


# ---- a scripted world for the flywheel on the real broker -------------------------------------
# The code runtime's agent runs real Python in the sandbox (the stub only writes the code), so
# every observation a task is grounded in is real program output.

EMPTY = '{"atomic": [], "depth": [], "width": []}'


def agent(description: str, code: str, answer: str) -> dict[str, Any]:
    """The stub as the code agent of one task: run `code`, then answer."""
    return {
        "match": "^" + re.escape(description),
        "replies": [f"```python\n{code}\n```", f"FINAL ANSWER: {answer}"],
    }


def grows(description: str, reply: str, faults: list[dict] | None = None) -> dict[str, Any]:
    """A stub rule answering the proposal of every parent with this description."""
    return {
        "match": "^SYNTHESIZE TASKS\\n(.|\\n)*The task:\\n" + re.escape(description),
        "replies": [[*(faults or []), reply]],
    }


FIB = "Print the first 10 Fibonacci numbers and their sum."
SQUARES = "Print the squares of 1 to 6 and their sum."
CUBE = "Print the cube of 3."
FIB_8TH = "Compute the 8th Fibonacci number (the sequence starts 0, 1) with Python."
FIB_SUM = "Compute the sum of the first ten Fibonacci numbers with Python."
FIB_DEPTH = "Find the 8th Fibonacci number, then the largest of the first ten Fibonacci numbers."
FIB_BOTH = (
    "Compute with Python both the 8th Fibonacci number and the sum of the first ten "
    "Fibonacci numbers."
)
SQ_SUM = "Compute the sum of the squares of the numbers 1 to 6 with Python."
FIB_MEAN = "Compute the mean of the first ten Fibonacci numbers with Python."
CUBES_SUM = "Compute the sum of the cubes of the numbers 1 to 6 with Python."
FIB_CODE = "fib = [0, 1]\nwhile len(fib) < 10:\n    fib.append(fib[-1] + fib[-2])\n"

SEEDS = [
    {
        "task_id": "seed-fib",
        "task_type": "code",
        "description": FIB,
        "max_steps": 4,
        "verify": {"type": "answer", "match": "contains", "expected": "34"},
    },
    {
        "task_id": "seed-squares",
        "task_type": "code",
        "description": SQUARES,
        "max_steps": 4,
        "verify": {"type": "answer", "match": "contains", "expected": "91"},
    },
    {
        "task_id": "seed-cube",
        "task_type": "code",
        "description": CUBE,
        "max_steps": 4,
        "verify": {"type": "answer", "match": "numeric", "expected": 27},
    },
]

GENERATION_1 = {  # parent description -> its proposal
    FIB: proposal(
        [(FIB_8TH, "13"), (FIB_SUM, "88"), ("What is the 10th Fibonacci number?", "34")],
        [(0, FIB_DEPTH, "34")],
        [(0, 1, FIB_BOTH)],
    ),
    SQUARES: proposal(
        [
            (SQ_SUM, "91"),
            ("Print the squares of 1 to 6 and their sum, please.", "91"),  # near the seed
            ("What is 6 squared?", "36"),
        ]
    ),
}
GENERATION_2 = {FIB_SUM: proposal([(FIB_MEAN, "8.8")]), SQ_SUM: proposal([(CUBES_SUM, "441")])}

AGENTS = [
    agent(FIB, FIB_CODE + "print(fib)\nprint('sum', sum(fib))", "the list ends with 34, sum 88"),
    agent(SQUARES, "sq = [i * i for i in range(1, 7)]\nprint(sq)\nprint('sum', sum(sq))", "91"),
    {"match": "^" + re.escape(CUBE), "replies": ["FINAL ANSWER: 9"]},  # wrong: not a parent
    agent(FIB_8TH, FIB_CODE + "print('8th:', fib[7], '9th:', fib[8])", "13"),
    agent(FIB_SUM, FIB_CODE + "print(sum(fib))\nprint('mean', sum(fib) / 10)", "88"),
    agent(FIB_DEPTH, FIB_CODE + "print(fib[7], max(fib))", "34"),
    agent(FIB_BOTH, FIB_CODE + "print(fib[7], sum(fib))", "13 and 88"),
    agent(
        SQ_SUM,
        "print(sum(i * i for i in range(1, 7)))\nprint('cubes', sum(i ** 3 for i in range(1, 7)))",
        "91",
    ),
    agent(FIB_MEAN, FIB_CODE + "print(sum(fib) / 10)", "8.8"),
    agent(CUBES_SUM, "print(sum(i ** 3 for i in range(1, 7)))", "441"),
]
KNOWN = [knows("What is the 10th Fibonacci", "34"), knows("What is 6 squared", "36")]


def world(*extra_growth: dict[str, Any], extra_agents: list | None = None) -> list[dict]:
    """The stub script: proposals and tool checks first (their prompts quote task
    descriptions), then the agents (anchored at the task's description)."""
    growth = [grows(d, r) for d, r in {**GENERATION_1, **GENERATION_2}.items()]
    return [
        *extra_growth,
        *growth,
        {"match": "^SYNTHESIZE TASKS", "replies": [EMPTY]},
        *KNOWN,
        DOES_NOT_KNOW,
        *AGENTS,
        *(extra_agents or []),
    ]
