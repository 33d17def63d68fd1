"""What a trajectory's tools really returned, and whether an answer is among it.

A synthesized task is only as good as its answer. Here an answer counts only when a tool of the
parent trajectory really returned it (an observation of a tool step; the agent's own words and
final answer do not count), and the task's `verify` spec is built from that observed value, so
the new task is verifiable by construction. Pure: trajectories in, values and specs out.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from adp.schemas.contracts import Trajectory

# steps whose observation is not a tool's output
NOT_TOOLS = frozenset({"final_answer", "no_action", "finish"})
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
QUOTED = re.compile(r"""['"]([^'"\n]{2,60})['"]""")
CODE = re.compile(r"\b[A-Za-z][\w-]*\d[\w-]*\b|\b\d+[A-Za-z][\w-]*\b")
EXCERPT = 80  # characters around an answer kept as its evidence


@dataclass(frozen=True)
class Observation:
    step_id: int
    text: str


@dataclass(frozen=True)
class Evidence:
    """Where a value was observed: the step and a short excerpt around it."""

    step_id: int
    excerpt: str

    def as_json(self) -> dict[str, Any]:
        return {"step_id": self.step_id, "excerpt": self.excerpt}


def observations(trajectory: Trajectory) -> list[Observation]:
    """The tool outputs of a trajectory, in step order (empty ones left out)."""
    return [
        Observation(s.step_id, s.observation)
        for s in trajectory.steps
        if s.action_type not in NOT_TOOLS and s.observation.strip()
    ]


def observed_values(seen: list[Observation], limit: int = 40) -> list[str]:
    """Short values the tools returned (numbers, quoted strings, codes like ZEBRA-42), first
    seen first: the prompt lists them so the model builds questions on real values."""
    found: dict[str, None] = {}
    for obs in seen:
        for pattern, group in ((QUOTED, 1), (CODE, 0), (NUMBER, 0)):
            for match in pattern.finditer(obs.text):
                found.setdefault(match.group(group).strip(), None)
                if len(found) >= limit:
                    return list(found)
    return list(found)


def normalise(text: str) -> str:
    """Case-folded, compatibility-normalised, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def as_number(answer: str) -> float | None:
    """The answer as a number when it is one ("3,628,800", "$47.00", "12%"), else None."""
    text = answer.strip().removeprefix("$").removesuffix("%").replace(",", "").strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def find_evidence(answer: str, seen: list[Observation]) -> Evidence | None:
    """The first observation that holds `answer`: numerically for a number (47 matches
    "47.00"), else as whole words, ignoring case and spacing. None: no tool returned it."""
    number = as_number(answer)
    if number is not None:
        for obs in seen:
            for match in NUMBER.finditer(obs.text):
                if math.isclose(float(match.group(0).replace(",", "")), number, rel_tol=1e-9):
                    return Evidence(obs.step_id, _excerpt(obs.text, match.start(), match.end()))
        return None
    wanted = normalise(answer)
    if len(wanted) < 2 or not any(ch.isalnum() for ch in wanted):
        return None
    for obs in seen:
        text = normalise(obs.text)
        at = whole_words_at(text, wanted)
        if at >= 0:
            return Evidence(obs.step_id, _excerpt(text, at, at + len(wanted)))
    return None


def gives_away(question: str, answer: str) -> bool:
    """True when the question already states its answer (as whole words)."""
    wanted = normalise(answer)
    return bool(wanted) and whole_words_at(normalise(question), wanted) >= 0


def whole_words_at(text: str, wanted: str) -> int:
    """Where `wanted` first occurs in `text` not inside a longer word ("kett" is not in
    "kettle"), or -1. A plain search: no regular expression compiled per answer."""
    at = text.find(wanted)
    while at >= 0:
        end = at + len(wanted)
        before = at == 0 or not _word_char(text[at - 1]) or not _word_char(wanted[0])
        after = end == len(text) or not _word_char(text[end]) or not _word_char(wanted[-1])
        if before and after:
            return at
        at = text.find(wanted, at + 1)
    return -1


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def verify_spec(answer: str, alone: bool = True) -> dict[str, Any]:
    """The answer check for an observed value: numeric for a number (the agent may format it
    its own way), else "contains" (an agent answers in a sentence). A number that is one of
    several values one answer must hold (a width task) is matched as a whole number anywhere
    in it instead: numeric reads only the answer's last number."""
    number = as_number(answer)
    if number is None:
        return {"type": "answer", "match": "contains", "expected": answer.strip()}
    expected: float | int = int(number) if number.is_integer() else number
    if alone:
        return {"type": "answer", "match": "numeric", "expected": expected, "rel_tolerance": 1e-6}
    whole = re.escape(str(expected)) + (r"(?:\.0+)?" if isinstance(expected, int) else "0*")
    return {"type": "answer", "match": "regex", "expected": rf"(?<![\d.]){whole}(?![\d])"}


def _excerpt(text: str, start: int, end: int) -> str:
    left = max(0, start - (EXCERPT - (end - start)) // 2)
    return text[left : left + max(EXCERPT, end - start)]
