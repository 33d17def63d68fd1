"""An LLM judge through the provider chain: the model grades the final answer.

    {"type": "judge", "rubric": "The answer names Neil Armstrong.", "expected": "Neil Armstrong"}

The judge is asked (at the client's own temperature, never a sample's) to grade the agent's final
answer against the rubric and the optional reference answer, and to reply with one JSON object
{"pass": true|false, "score": 0..1, "reason": "..."}. Its raw exchange is kept in the verdict
like any step's. A judge that cannot be reached, or whose reply holds no such object, decides
nothing: the verdict records the error (and the exchange, if there was one).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from adp.runtimes.verify.base import BadSpec, CannotVerify, Judgement, Subject, VerifyContext

SYSTEM = (
    "You grade the work of an AI agent strictly and fairly. You see the task, a rubric, "
    "maybe a reference answer, and the agent's final answer. Reply with exactly one JSON "
    'object and nothing else: {"pass": true or false, "score": a number from 0 to 1, '
    '"reason": "one sentence"}.'
)
ANSWER_LIMIT = 8000


def judge_prompt(spec: dict[str, Any], subject: Subject) -> str:
    answer = subject.final_result or ""
    if len(answer) > ANSWER_LIMIT:
        answer = answer[:ANSWER_LIMIT] + f"\n[... {len(answer) - ANSWER_LIMIT} more characters]"
    parts = [f"TASK:\n{subject.task.description}", f"RUBRIC:\n{spec['rubric']}"]
    if spec.get("expected") is not None:
        parts.append(f"REFERENCE ANSWER:\n{spec['expected']}")
    if subject.task.task_type == "code" and subject.final_code:
        parts.append(f"THE AGENT'S FINAL CODE:\n{subject.final_code[:ANSWER_LIMIT]}")
    parts.append(f"THE AGENT'S FINAL ANSWER:\n{answer or '(none)'}")
    return "\n\n".join(parts)


def parse_grade(text: str) -> tuple[bool, float | None, str] | None:
    """(passed, score, reason) from the judge's reply, or None if it holds no grade."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text or ""):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        verdict = obj.get("pass", obj.get("passed", obj.get("verdict")))
        if isinstance(verdict, str) and verdict.lower() in ("pass", "fail", "true", "false"):
            verdict = verdict.lower() in ("pass", "true")
        if not isinstance(verdict, bool):
            continue
        score = obj.get("score")
        score = (
            float(score)
            if isinstance(score, (int, float)) and not isinstance(score, bool) and 0 <= score <= 1
            else None
        )
        return verdict, score, str(obj.get("reason", ""))[:1000]
    return None


class JudgeVerifier:
    name: ClassVar[str] = "judge"

    def check(self, spec: dict[str, Any]) -> None:
        if not isinstance(spec.get("rubric"), str) or not spec["rubric"].strip():
            raise BadSpec("verify.rubric: what a correct answer must do (text)")

    async def verify(self, spec: dict[str, Any], subject: Subject, ctx: VerifyContext) -> Judgement:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": judge_prompt(spec, subject)},
        ]
        try:
            reply = await ctx.model().chat(messages)
        except CannotVerify:
            raise
        except Exception as exc:
            raise CannotVerify(f"the judge could not be asked: {exc}") from exc
        grade = parse_grade(reply.content)
        if grade is None:
            shown = (reply.content or "")[:300]
            raise CannotVerify(f"the judge's reply holds no grade: {shown!r}", reply.exchange)
        passed, score, reason = grade
        if score is None:
            score = 1.0 if passed else 0.0
        return Judgement(passed, score, reason, reply.exchange)
