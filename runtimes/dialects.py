"""How a model writes its actions and how it is told about tools: the `parse` step of the agent
loop (runtimes/agent.py), for each of the protocols an endpoint may speak.

- "tools": OpenAI function calling. Tool specs go in the request's `tools`; the reply's
  tool_calls are the actions. A reply without tool calls is read as text (below).
- "text": for endpoints without tool calling. The tools are described in the system prompt;
  the model replies with one ```json {"tool": name, "arguments": {...}}``` block, or a line
  `FINAL ANSWER: ...`. A ```python block counts as a call of the `python` tool where there is one.
- "code": the code runtime's text protocol: the runtime's own prompt explains it; any fenced
  block (```python, ```py or a bare ```) is a program for the `python` tool.

A reply with no tool call and no parsable action is the model's final answer in prose; an
empty one is no action at all.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from adp.runtimes.base import ModelReply, ToolCall

FINAL_ANSWER = re.compile(r"FINAL ANSWER:\s*(.*)", re.DOTALL | re.IGNORECASE)
FENCE = re.compile(r"```([a-zA-Z]*)[ \t]*\n(.*?)```", re.DOTALL)
_STATUS = re.compile(r"(?:^|[\s:])(4\d\d): ")
_RETRYABLE_4XX = {408, 409, 429}

FINISH_SPEC = {
    "type": "function",
    "function": {
        "name": "finish",
        "description": "Finish the task with the final answer.",
        "parameters": {
            "type": "object",
            "properties": {
                "answer": {"type": "string", "description": "The final answer to the task"}
            },
            "required": ["answer"],
        },
    },
}

TEXT_GUIDE = """You can use these tools:
{tools}

To use a tool, reply with a short thought and exactly one JSON block:
```json
{{"tool": "<tool name>", "arguments": {{...}}}}
```
You will then see what the tool returned. When you know the answer, reply with one line:
FINAL ANSWER: <the answer>"""

TOOLS_GUIDE = (
    "Act through the tools, one step at a time, and look at what each returns. "
    "When you know the answer, call the `finish` tool with it."
)


@dataclass
class Decision:
    """What one reply asks for: tool calls (a `finish` call among them ends the task), or a
    final answer in text, or neither (answer None, no calls)."""

    calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None
    native: bool = False  # the calls came as the endpoint's tool_calls (answered as role "tool")


@dataclass(frozen=True)
class Dialect:
    name: str
    native_tools: bool  # send tool specs in the request and read tool_calls
    guide: str  # appended to the system prompt; "{tools}" becomes the tool list
    bare_fence_is_code: bool = False

    def system(self, prompt: str, specs: list[dict[str, Any]]) -> str:
        guide = self.guide.format(tools=describe_tools(specs)) if self.guide else ""
        return f"{prompt.strip()}\n\n{guide}" if guide else prompt.strip()

    def request_tools(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        return specs if self.native_tools else None

    def parse(self, reply: ModelReply, names: set[str]) -> Decision:
        if self.native_tools and reply.tool_calls:
            return _with_finish(Decision(list(reply.tool_calls), native=True))
        content = reply.content or ""
        call, answer = parse_text_reply(content, names, bare_fence_is_code=self.bare_fence_is_code)
        if call is not None:
            return _with_finish(Decision([call]))
        if answer is None:
            answer = content.strip()
        return Decision(answer=answer or None)


DIALECTS = {
    "tools": Dialect("tools", native_tools=True, guide=TOOLS_GUIDE),
    "text": Dialect("text", native_tools=False, guide=TEXT_GUIDE),
    "code": Dialect("code", native_tools=False, guide="", bare_fence_is_code=True),
}


def _with_finish(decision: Decision) -> Decision:
    """A `finish` call carries the final answer."""
    for call in decision.calls:
        if call.name == "finish":
            args = call.arguments
            decision.answer = str(args.get("answer", args.get("result", args.get("_raw", ""))))
            break
    return decision


def rejects_tools(exc: BaseException) -> bool:
    """Did the endpoint refuse the request with a client error (e.g. no tool support)?"""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return 400 <= status < 500 and status not in _RETRYABLE_4XX
    return any(int(code) not in _RETRYABLE_4XX for code in _STATUS.findall(str(exc)))


def describe_tools(specs: list[dict[str, Any]]) -> str:
    lines = []
    for spec in specs:
        fn = spec["function"]
        props = fn.get("parameters", {}).get("properties", {})
        required = set(fn.get("parameters", {}).get("required", []))
        args = ", ".join(
            f"{k}: {v.get('type', 'any')}{'' if k in required else '?'}" for k, v in props.items()
        )
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '')}")
    return "\n".join(lines)


def _call_id() -> str:
    return f"text_{uuid.uuid4().hex[:12]}"


def _json_call(text: str, names: set[str], strict: bool) -> ToolCall | None:
    """A {"tool": name, "arguments": {...}} object in `text`; `strict`: only known tool names."""
    obj = None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        decoder = json.JSONDecoder()
        for m in re.finditer(r"\{", text):
            try:
                obj, _ = decoder.raw_decode(text, m.start())
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and ("tool" in obj or "name" in obj):
                break
            obj = None
    if not isinstance(obj, dict):
        return None
    name = obj.get("tool") or obj.get("name") or obj.get("action")
    if not isinstance(name, str) or (strict and name not in names and name != "finish"):
        return None
    args = obj.get("arguments", obj.get("args", obj.get("parameters", obj.get("input"))))
    if args is None:
        args = {k: v for k, v in obj.items() if k not in ("tool", "name", "action")}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = {"_raw": args}
    return ToolCall(name, args if isinstance(args, dict) else {"_raw": args}, _call_id())


def parse_text_reply(
    text: str, names: set[str], *, bare_fence_is_code: bool = False
) -> tuple[ToolCall | None, str | None]:
    """-> (call, None) | (None, final answer) | (None, None) when the reply holds neither.
    Whichever comes first wins: an action, or the FINAL ANSWER line."""
    final = FINAL_ANSWER.search(text)
    call, at = None, len(text) + 1
    for m in FENCE.finditer(text):
        lang, body = m.group(1).lower(), m.group(2)
        code = lang in ("python", "py") or (lang == "" and bare_fence_is_code)
        if code and "python" in names and body.strip():
            call = ToolCall("python", {"code": body}, _call_id())
        elif lang in ("", "json") and not code:
            call = _json_call(body, names, strict=False)
        if call is not None:
            at = m.start()
            break
    if call is None:
        unfenced = FENCE.sub("", text)
        if "{" in unfenced:
            call = _json_call(unfenced, names, strict=True)
            at = text.find("{") if call else at
    if final and (call is None or final.start() < at):
        return None, final.group(1).strip()
    return call, None


def thinking_of(reply: ModelReply) -> str | None:
    """The model's own words around its action: any reasoning_content, then its prose."""
    parts = []
    try:
        msg = (reply.exchange.response or {})["choices"][0]["message"]  # type: ignore[union-attr]
        if msg.get("reasoning_content"):
            parts.append(str(msg["reasoning_content"]).strip())
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    prose = FINAL_ANSWER.sub("", FENCE.sub("", reply.content or "")).strip()
    if prose:
        parts.append(prose)
    return "\n\n".join(parts) or None
