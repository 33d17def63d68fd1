"""What the synthesizer asks the model, and how it reads the replies. Pure: text in, text out.

Two questions:
- the proposal (first line "SYNTHESIZE TASKS"): a verified trajectory's task and what its tools
  really returned; the model replies with one JSON object of atomic, depth and width tasks;
- the tool check (first line "ANSWER WITHOUT TOOLS"): a candidate's question alone, answered
  from the model's own knowledge; a candidate it already answers right needs no tool.

The first lines are fixed so a scripted stub (`adp llm-stub --script`) can tell the two apart
and a test can match one parent ("parent task: <task_id>").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from adp.schemas.contracts import Trajectory
from adp.streams.synthesis.grounding import Observation

PROPOSE_MARK = "SYNTHESIZE TASKS"
CHECK_MARK = "ANSWER WITHOUT TOOLS"
NO_JSON = "the reply holds no JSON object"
OBSERVATION_CHARS = 1500  # per tool output in the prompt
PROMPT_OBSERVATION_CHARS = 6000  # all of them together

PROPOSE_SYSTEM = """You write new tasks for an AI agent. Every task you write must be grounded in
what a real tool run returned: its answer is a value copied exactly from the tool output you are
shown, never a value you know or compute yourself. A new task is solved the same way as the task
shown (the same tools), states everything it needs, and never contains its own answer."""

HOW = {
    "code": "solved by writing and running Python in a sandbox without network access",
    "web": "solved by operating a web browser, starting from the same page",
    "reasoning": "solved with a browser and Python, starting from the same page if one is given",
}

INSTRUCTIONS = """Write new tasks of these kinds ({limit} of each at most):
- atomic: a question whose answer is ONE value copied exactly from the tool output above;
- depth: a question that can only be answered by first finding the answer of atomic task number
  "uses" as an intermediate result; its own answer is another value copied exactly from the
  tool output;
- width: one task asking for the answers of two atomic tasks ("fuses": [i, j]) together.

Reply with one JSON object and nothing else:
{{"atomic": [{{"question": "...", "answer": "..."}}],
 "depth": [{{"uses": 0, "question": "...", "answer": "..."}}],
 "width": [{{"fuses": [0, 1], "question": "..."}}]}}"""

CHECK_SYSTEM = """Answer the question from what you already know. Do not run code, browse or use
any tool. If you cannot know the answer, say so. End with one line:
FINAL ANSWER: <the answer>"""


@dataclass(frozen=True)
class Atomic:
    index: int
    question: str
    answer: str


@dataclass(frozen=True)
class Depth:
    index: int
    uses: int  # the atomic proposal whose answer is the intermediate result
    question: str
    answer: str


@dataclass(frozen=True)
class Width:
    index: int
    fuses: tuple[int, int]  # the two atomic proposals asked for together
    question: str


@dataclass
class Proposal:
    atomic: list[Atomic] = field(default_factory=list)
    depth: list[Depth] = field(default_factory=list)
    width: list[Width] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # items (or the reply) not understood

    @property
    def size(self) -> int:
        return len(self.atomic) + len(self.depth) + len(self.width)


def proposal_messages(
    parent: Trajectory, seen: list[Observation], values: list[str], limit: int
) -> list[dict[str, Any]]:
    """The proposal request for one parent trajectory."""
    task = parent.metadata.task if isinstance(parent.metadata.task, dict) else {}
    start_url = (task.get("constraints") or {}).get("start_url")
    lines = [
        PROPOSE_MARK,
        f"parent task: {parent.task_id}",
        f"task type: {parent.task_type} ({HOW.get(parent.task_type, 'solved with tools')})",
    ]
    if start_url:
        lines.append(f"start page: {start_url}")
    lines += ["", "The task:", parent.description.strip(), "", "What the tools returned:"]
    lines += _observation_lines(seen)
    if values:
        lines += ["", "Values the tools returned: " + ", ".join(json.dumps(v) for v in values)]
    lines += ["", INSTRUCTIONS.format(limit=limit)]
    return [
        {"role": "system", "content": PROPOSE_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _observation_lines(seen: list[Observation]) -> list[str]:
    lines, room = [], PROMPT_OBSERVATION_CHARS
    for obs in seen:
        if room <= 0:
            lines.append("[later steps left out]")
            break
        text = obs.text.strip()[: min(OBSERVATION_CHARS, room)]
        room -= len(text)
        lines.append(f"[step {obs.step_id}] {text}")
    return lines


def check_messages(question: str) -> list[dict[str, Any]]:
    """The tool-necessity question for one candidate."""
    return [
        {"role": "system", "content": CHECK_SYSTEM},
        {"role": "user", "content": f"{CHECK_MARK}\n\n{question}"},
    ]


def final_answer(text: str) -> str:
    """What a reply answers: after its last "FINAL ANSWER:", else the whole reply."""
    marker = text.rfind("FINAL ANSWER:")
    return (text[marker + len("FINAL ANSWER:") :] if marker >= 0 else text).strip()


# ---- reading a proposal ---------------------------------------------------------------------


def parse_proposal(text: str) -> Proposal:
    """The tasks of a proposal reply; what cannot be read is listed in `problems`."""
    obj = _json_object(text)
    if obj is None:
        return Proposal(problems=[NO_JSON])
    out = Proposal()
    for i, item in enumerate(_items(obj, "atomic", out)):
        question, answer = _text(item, "question"), _answer(item)
        if question and answer:
            out.atomic.append(Atomic(i, question, answer))
        else:
            out.problems.append(f"atomic[{i}]: needs a question and an answer")
    for i, item in enumerate(_items(obj, "depth", out)):
        question, answer, uses = _text(item, "question"), _answer(item), item.get("uses")
        if question and answer and _index(uses):
            out.depth.append(Depth(i, uses, question, answer))
        else:
            out.problems.append(f"depth[{i}]: needs uses, a question and an answer")
    for i, item in enumerate(_items(obj, "width", out)):
        question, fuses = _text(item, "question"), item.get("fuses")
        if question and isinstance(fuses, list) and len(fuses) == 2 and all(map(_index, fuses)):
            out.width.append(Width(i, (fuses[0], fuses[1]), question))
        else:
            out.problems.append(f"width[{i}]: needs fuses [i, j] and a question")
    return out


def _json_object(text: str) -> dict | None:
    """The first JSON object in the reply (code fences and prose around it are common)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _items(obj: dict, kind: str, out: Proposal) -> list[dict]:
    items = obj.get(kind) or []
    if not isinstance(items, list):
        out.problems.append(f"{kind}: not a list")
        return []
    good = [item if isinstance(item, dict) else {} for item in items]
    return good


def _text(item: dict, key: str) -> str:
    value = item.get(key)
    return value.strip() if isinstance(value, str) else ""


def _answer(item: dict) -> str:
    value = item.get("answer")
    if isinstance(value, bool) or value is None:
        return ""
    return value.strip() if isinstance(value, str) else json.dumps(value)


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
