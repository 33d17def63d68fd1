"""The final answer against an expected value: exact, contains, regex or numeric.

    {"type": "answer", "expected": "120"}                          exact (the default match)
    {"type": "answer", "match": "contains", "expected": "Paris"}
    {"type": "answer", "match": "regex", "expected": "^\\s*1969\\b"}
    {"type": "answer", "match": "numeric", "expected": 3.1416, "tolerance": 0.001}

`expected` may be a list: any one of them passes. Text matches ignore case and collapse
whitespace unless "case_sensitive": true. numeric reads the answer as a number, or else takes the
LAST number in it ("... so the result is 1,234.5" -> 1234.5), and passes within an absolute
`tolerance` (default 1e-6) or a relative `rel_tolerance` (default 0).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from adp.runtimes.verify.base import BadSpec, Judgement, Subject, VerifyContext

MATCHES = ("exact", "contains", "regex", "numeric")
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _norm(text: str, case_sensitive: bool) -> str:
    text = " ".join(str(text).split())
    return text if case_sensitive else text.casefold()


def last_number(text: str) -> float | None:
    """The answer as a number, or the last number written in it."""
    candidates = [m.group(0) for m in NUMBER.finditer(text) if re.search(r"\d", m.group(0))]
    whole = text.strip().rstrip(".")
    for token in ([whole] if whole else []) + candidates[::-1]:
        try:
            value = float(token.replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


class AnswerVerifier:
    name: ClassVar[str] = "answer"

    def check(self, spec: dict[str, Any]) -> None:
        match = spec.get("match", "exact")
        if match not in MATCHES:
            raise BadSpec(f"verify.match: one of {', '.join(MATCHES)}, got {match!r}")
        if "expected" not in spec:
            raise BadSpec("verify.expected: missing (required)")
        expected = spec["expected"] if isinstance(spec["expected"], list) else [spec["expected"]]
        if not expected:
            raise BadSpec("verify.expected: an empty list never matches")
        for value in expected:
            if match == "numeric":
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float, str))
                    or last_number(str(value)) is None
                ):
                    raise BadSpec(f"verify.expected: {value!r} is not a number")
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise BadSpec(f"verify.expected: text to match, got {value!r}")
            if match == "regex":
                try:
                    re.compile(str(value))
                except re.error as exc:
                    raise BadSpec(f"verify.expected: not a regular expression: {exc}") from None
        for key in ("tolerance", "rel_tolerance"):
            if key in spec and (
                isinstance(spec[key], bool)
                or not isinstance(spec[key], (int, float))
                or spec[key] < 0
            ):
                raise BadSpec(f"verify.{key}: a number >= 0")

    async def verify(self, spec: dict[str, Any], subject: Subject, ctx: VerifyContext) -> Judgement:
        match = spec.get("match", "exact")
        answer = subject.final_result or ""
        expected = spec["expected"] if isinstance(spec["expected"], list) else [spec["expected"]]
        case = bool(spec.get("case_sensitive", False))
        shown = answer if len(answer) <= 200 else answer[:200] + "..."
        if match == "numeric":
            got = last_number(answer)
            tol, rel = float(spec.get("tolerance", 1e-6)), float(spec.get("rel_tolerance", 0.0))
            for value in expected:
                want = last_number(str(value))
                if got is not None and math.isclose(got, want, rel_tol=rel, abs_tol=tol):
                    return Judgement(True, 1.0, f"{got:g} is within {tol:g} of {want:g}")
            return Judgement(
                False,
                0.0,
                f"expected {_alts(expected)} (±{tol:g}), got "
                + (f"{got:g} from {shown!r}" if got is not None else f"no number in {shown!r}"),
            )
        flags = 0 if case else re.IGNORECASE
        for value in expected:
            if (
                (match == "exact" and _norm(answer, case) == _norm(str(value), case))
                or (match == "contains" and _norm(str(value), case) in _norm(answer, case))
                or (match == "regex" and re.search(str(value), answer, flags))
            ):
                return Judgement(True, 1.0, f"{match} match of {str(value)!r}")
        return Judgement(False, 0.0, f"no {match} match of {_alts(expected)} in {shown!r}")


def _alts(values: list[Any]) -> str:
    return " or ".join(repr(v) for v in values)
