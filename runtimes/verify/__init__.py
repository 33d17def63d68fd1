"""Verification: judge a finished attempt against its task's `verify` spec.

Where it runs (docs/tasks.md, "Verification"): as the last act of an attempt, in the runtime worker,
after the agent finished and before the finished event is sent, with the same LLM provider
chain and the same python sandbox the agent used (streams/runtime/attempt.py); and offline in
`adp verify`, which re-judges stored trajectories with a new or changed spec and writes new
verdicts without touching the steps. The verifiers sit with the runtimes (floor 2) because they
use the runtimes' tools: the sandbox and the LLM client.

A spec is one object, a list of them (all must pass), or null (unverified). Each object names
its verifier in "type" (answer, python, judge, or a plugin registered in the `adp.verifiers`
entry-point group); an object without "type" but with "expected" is an answer check. Every spec
may set "timeout" (seconds).

Verifying never fabricates a result: a verifier that cannot run (no sandbox, judge down, a spec
no verifier knows) gives a Verdict with passed=None and the error, and the trajectory's success
is then false -- not a pass -- with the verdict saying why.
"""

from __future__ import annotations

import asyncio
import time
from functools import cache
from typing import Any

from adp.core import metrics
from adp.core.registry import Registry
from adp.runtimes.verify.base import (
    DEFAULT_TIMEOUT,
    BadSpec,
    CannotVerify,
    Judgement,
    Subject,
    Verifier,
    VerifyContext,
)
from adp.schemas.contracts import UNVERIFIED, Verdict

__all__ = [
    "GROUP",
    "BadSpec",
    "CannotVerify",
    "Judgement",
    "Subject",
    "Verifier",
    "VerifyContext",
    "available",
    "check_spec",
    "load_verifier",
    "normalise",
    "verify",
]

GROUP = "adp.verifiers"
GUARD = 30.0  # seconds past a spec's timeout before the verifier is given up on


VERIFIERS = Registry("verifier", group=GROUP, error=BadSpec)


def available() -> dict[str, str]:
    return VERIFIERS.entries()


@cache
def load_verifier(name: str) -> Verifier:
    try:
        return VERIFIERS.load(name)()
    except BadSpec as exc:
        raise BadSpec(f"verify.type: {exc}") from None


def normalise(spec: Any) -> list[dict[str, Any]]:
    """The spec as a list of verifier specs, each with its "type"."""
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for i, item in enumerate(items):
        where = f"verify[{i}]" if isinstance(spec, list) else "verify"
        if not isinstance(item, dict):
            raise BadSpec(
                f'{where}: an object naming its verifier in "type", got {type(item).__name__}'
            )
        if "type" not in item:
            if "expected" not in item:
                raise BadSpec(f"{where}.type: missing (answer, python, judge, or a plugin)")
            item = {"type": "answer", **item}
        if not isinstance(item["type"], str):
            raise BadSpec(f"{where}.type: a verifier name")
        timeout = item.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise BadSpec(f"{where}.timeout: seconds, a number > 0")
        out.append(item)
    if isinstance(spec, list) and not out:
        raise BadSpec("verify: an empty list checks nothing (use null for unverified)")
    return out


def check_spec(spec: Any) -> None:
    """Raise BadSpec (naming the field) unless every part of `spec` can be applied."""
    for item in normalise(spec):
        try:
            load_verifier(item["type"]).check(item)
        except BadSpec:
            raise
        except Exception as exc:
            raise BadSpec(f"verify ({item['type']}): {exc}") from exc


async def _one(
    spec: dict[str, Any], subject: Subject, ctx: VerifyContext
) -> tuple[str, Judgement | None, str | None, Any]:
    """(name, judgement or None, error, llm exchange) of one verifier spec."""
    name = spec["type"]
    try:
        verifier = load_verifier(name)
        verifier.check(spec)
        async with asyncio.timeout(float(spec.get("timeout", DEFAULT_TIMEOUT)) + GUARD):
            judgement = await verifier.verify(spec, subject, ctx)
        return name, judgement, None, judgement.llm
    except CannotVerify as exc:
        return name, None, str(exc), exc.llm
    except BadSpec as exc:
        return name, None, f"bad spec: {exc}", None
    except TimeoutError:
        return name, None, "the verifier did not finish in time", None
    except Exception as exc:
        return name, None, f"the verifier failed: {type(exc).__name__}: {exc}", None


async def verify(spec: Any, subject: Subject, ctx: VerifyContext) -> Verdict:
    """The verdict of `spec` on `subject` (unverified for a null spec). Never raises for a
    verifier's trouble: that is recorded as the verdict's error."""
    started = time.monotonic()
    try:
        specs = normalise(spec)
    except BadSpec as exc:
        specs, problem = None, str(exc)
    if specs == []:
        return UNVERIFIED
    if specs is None:
        verdict = Verdict(
            verifier="invalid", error=f"bad spec: {problem}", spec=spec, verified_at=time.time()
        )
    else:
        results = [await _one(item, subject, ctx) for item in specs]
        errors = [f"{name}: {error}" for name, _, error, _ in results if error]
        judged = [(name, j) for name, j, _, _ in results if j is not None]
        scores = [j.score if j.score is not None else float(j.passed) for _, j in judged]
        single = len(results) == 1
        verdict = Verdict(
            verifier=results[0][0] if single else f"all({','.join(r[0] for r in results)})",
            passed=None if errors else all(j.passed for _, j in judged),
            score=sum(scores) / len(scores) if scores and not errors else None,
            details=judged[0][1].details
            if single and judged
            else "; ".join(
                f"{name}: {'pass' if j.passed else 'FAIL'}: {j.details}" for name, j in judged
            ),
            error=(results[0][2] if single else "; ".join(errors)) if errors else None,
            spec=spec,
            llm=next((r[3] for r in results if r[3] is not None), None),
            verified_at=time.time(),
        )
    verdict = verdict.model_copy(update={"duration": round(time.monotonic() - started, 6)})
    metrics.VERIFICATIONS.labels(verdict.verifier, verdict.status).inc()
    return verdict
