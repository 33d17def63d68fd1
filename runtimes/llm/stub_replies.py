"""The pure part of `adp llm-stub` (runtimes/llm/stub.py documents the script format): parsing
scripts, the unscripted default replies, and building OpenAI-shaped messages and token counts.
No HTTP here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KEYS = ("status", "hang", "malformed")


# --------------------------------------------------------------------------- script


@dataclass
class Slot:
    faults: list[dict[str, Any]] = field(default_factory=list)
    reply: Any = None  # str | dict | None (None: the default reply)


@dataclass
class Rule:
    pattern: re.Pattern[str] | None
    slots: list[Slot]


def _is_fault(entry: Any) -> bool:
    return isinstance(entry, dict) and any(k in entry for k in FAULT_KEYS)


def _slots(replies: list[Any]) -> list[Slot]:
    slots: list[Slot] = []
    pending: list[dict[str, Any]] = []
    for entry in replies:
        if isinstance(entry, list):  # one slot: its faults, then its reply
            inner = [e for e in entry if not _is_fault(e)]
            slots.append(
                Slot(pending + [e for e in entry if _is_fault(e)], inner[0] if inner else None)
            )
            pending = []
        elif _is_fault(entry):
            pending.append(entry)
        elif isinstance(entry, (str, dict)):
            slots.append(Slot(pending, entry))
            pending = []
        else:
            raise ValueError(f"bad stub reply entry: {entry!r}")
    if pending:
        slots.append(Slot(pending, None))
    return slots


def load_script(script: Any) -> list[Rule]:
    """Parse a script: a path to a JSON file, JSON text, or the decoded list/dict."""
    if script is None:
        return []
    if isinstance(script, str) and script.lstrip()[:1] in ("[", "{"):
        script = json.loads(script)
    elif isinstance(script, (str, Path)):
        script = json.loads(Path(script).read_text())
    if isinstance(script, dict):
        script = script.get("rules", [])
    rules = []
    for i, raw in enumerate(script):
        if not isinstance(raw, dict) or not isinstance(raw.get("replies", []), list):
            raise ValueError(f"stub script rule {i} must be an object with a 'replies' list")
        pattern = re.compile(raw["match"]) if raw.get("match") is not None else None
        rules.append(Rule(pattern, _slots(raw.get("replies", []))))
    return rules


# --------------------------------------------------------------------------- helpers


def message_text(content: Any) -> str:
    """Message content as text (strings, or lists of {"type": "text", "text": ...} parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _words(text: str) -> int:
    return len(text.split())


def first_user(messages: list[dict[str, Any]]) -> str:
    return next((message_text(m.get("content")) for m in messages if m.get("role") == "user"), "")


def _last(messages: list[dict[str, Any]], role: str) -> str | None:
    for m in reversed(messages):
        if m.get("role") == role:
            return message_text(m.get("content"))
    return None


def _observation(messages: list[dict[str, Any]]) -> str:
    text = (_last(messages, "user") or "").strip()
    if text.startswith("Observation:"):
        text = text[len("Observation:") :]
    return text.strip()


def _print_code(messages: list[dict[str, Any]]) -> str:
    return f"print({first_user(messages)[:40]!r})"


def _tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    names = []
    for t in tools or []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(fn, dict) and fn.get("name"):
            names.append(fn["name"])
    return names


def default_reply(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, index: int
) -> Any:
    names = _tool_names(tools)
    if not names:
        if index == 0:
            return (
                "Thought: I will run a short program first.\n"
                f"```python\n{_print_code(messages)}\n```"
            )
        return "FINAL ANSWER: " + _observation(messages)
    if index == 0:
        if "python" in names:
            call = {"name": "python", "arguments": {"code": _print_code(messages)}}
        elif "read_page" in names:
            call = {"name": "read_page", "arguments": {}}
        else:
            call = {"name": names[0], "arguments": {}}
        return {"content": None, "tool_calls": [call]}
    observed = _last(messages, "tool")
    answer = (observed if observed is not None else _observation(messages)).strip()[:200]
    if "finish" in names:
        return {
            "content": None,
            "tool_calls": [{"name": "finish", "arguments": {"answer": answer}}],
        }
    return "FINAL ANSWER: " + answer


def reply_message(reply: Any, index: int) -> tuple[dict[str, Any], str]:
    """(assistant message, finish_reason) for a reply entry."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}, "stop"
    msg: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    calls = []
    for j, call in enumerate(reply.get("tool_calls") or []):
        args = call.get("arguments", {})
        calls.append(
            {
                "id": call.get("id") or f"call_{index}_{j}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    if calls:
        msg["tool_calls"] = calls
    return msg, reply.get("finish_reason") or ("tool_calls" if calls else "stop")


def completion_words(msg: dict[str, Any]) -> int:
    n = _words(message_text(msg.get("content")))
    for c in msg.get("tool_calls", []):
        n += _words(c["function"]["arguments"])
    return n


def prompt_words(messages: list[dict[str, Any]]) -> int:
    n = 0
    for m in messages:
        n += _words(message_text(m.get("content")))
        for c in m.get("tool_calls") or []:
            n += _words(str((c.get("function") or {}).get("arguments", "")))
    return n
