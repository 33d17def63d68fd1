"""The tool-calling agent loop shared by the web and reasoning runtimes.

Each step is one model call plus the tool calls it asked for, each run for real. One Step per
model call: action_type is the tool's name (or "final_answer"; "tool_calls" when one reply asked
for several tools, with action_params {"calls": [...]}), action_params its arguments, the
observation exactly what the tool returned, thinking the model's text, llm the raw exchange.

Two protocols:
- "tools": OpenAI function calling. Tool specs are JSON schemas; results go back as role
  "tool" messages with the call's tool_call_id. `finish` {"answer"} ends the task.
- "text": for endpoints without tool calling. The tools are described in the system prompt; the
  model replies with one ```json {"tool": name, "arguments": {...}}``` block, or a line
  `FINAL ANSWER: ...`; results go back as a user message "Observation:\n<output>".
  A ```python block counts as a call of the `python` tool where there is one.
"auto" (the default) starts with "tools" and falls back to "text" for the rest of the task when
the endpoint rejects the `tools` request with a 4xx (other than 408/409/429).

A reply with no tool call and no parsable action is the model's final answer in prose.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from adp.schemas.contracts import ErrorType, Step, Task
from adp.runtimes.base import EmitStep, Model, ModelReply, Outcome, ToolCall

PROTOCOLS = ("auto", "tools", "text")
FINAL_ANSWER = re.compile(r"FINAL ANSWER:\s*(.*)", re.DOTALL | re.IGNORECASE)
FENCE = re.compile(r"```([a-zA-Z]*)[ \t]*\n(.*?)```", re.DOTALL)
_STATUS = re.compile(r"(?:^|[\s:])(4\d\d): ")
_RETRYABLE_4XX = {408, 409, 429}


@dataclass
class ToolResult:
    """What a tool really returned: the observation text, whether it worked, and why not."""

    observation: str
    ok: bool = True
    error: str | None = None


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    run: Callable[[dict[str, Any]], Awaitable[ToolResult]]

    def spec(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


FINISH_SPEC = {"type": "function", "function": {
    "name": "finish", "description": "Finish the task with the final answer.",
    "parameters": {"type": "object", "properties": {
        "answer": {"type": "string", "description": "The final answer to the task"}},
        "required": ["answer"]}}}


def python_tool(sandbox: Any, limits: Any) -> Tool:
    """The python sandbox as a tool: {"code"} -> what the program printed (or its traceback)."""
    async def run(args: dict[str, Any]) -> ToolResult:
        code = args.get("code") or args.get("source") or args.get("_raw")
        if not isinstance(code, str) or not code.strip():
            return ToolResult("python needs a non-empty 'code' string.", False, "missing argument 'code'")
        result = await sandbox.run_python(code, limits)
        error = None if result.ok else ("timeout" if getattr(result, "timed_out", False)
                                         else f"exit code {getattr(result, 'exit_code', '?')}")
        return ToolResult(result.observation(), result.ok, error)

    return Tool("python", "Run a Python 3 program in a sandbox (no network) and return what it "
                "printed. Print every value you need.",
                {"type": "object", "properties": {"code": {"type": "string",
                                                           "description": "Python source"}},
                 "required": ["code"]}, run)


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
        args = ", ".join(f"{k}: {v.get('type', 'any')}{'' if k in required else '?'}"
                         for k, v in props.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '')}")
    return "\n".join(lines)


TEXT_PROTOCOL = """You can use these tools:
{tools}

To use a tool, reply with a short thought and exactly one JSON block:
```json
{{"tool": "<tool name>", "arguments": {{...}}}}
```
You will then see what the tool returned. When you know the answer, reply with one line:
FINAL ANSWER: <the answer>"""

TOOLS_PROTOCOL = ("Act through the tools, one step at a time, and look at what each returns. "
                  "When you know the answer, call the `finish` tool with it.")


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
    return ToolCall(name, args if isinstance(args, dict) else {"_raw": args},
                    f"text_{uuid.uuid4().hex[:12]}")


def parse_text_reply(text: str, names: set[str]) -> tuple[ToolCall | None, str | None]:
    """-> (call, None) | (None, final answer) | (None, None) when the reply holds neither."""
    final = FINAL_ANSWER.search(text)
    call, at = None, len(text) + 1
    for m in FENCE.finditer(text):
        lang, body = m.group(1).lower(), m.group(2)
        if lang in ("python", "py") and "python" in names and body.strip():
            call = ToolCall("python", {"code": body}, f"text_{uuid.uuid4().hex[:12]}")
        elif lang in ("", "json"):
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


class ToolAgent:
    """Drive `model` with `tools` (+ finish) until it finishes or runs out of steps."""

    def __init__(self, model: Model, tools: list[Tool], system_prompt: str, *,
                 protocol: str = "auto", observation_limit: int = 12000) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.model, self.system_prompt, self.protocol = model, system_prompt, protocol
        self.tools = {t.name: t for t in tools}
        self.specs = [t.spec() for t in tools] + [FINISH_SPEC]
        self.observation_limit = observation_limit

    def system(self, mode: str) -> str:
        guide = TEXT_PROTOCOL.format(tools=describe_tools(self.specs)) if mode == "text" \
            else TOOLS_PROTOCOL
        return f"{self.system_prompt.strip()}\n\n{guide}"

    async def run(self, task: Task, emit: EmitStep, *, context: str | None = None,
                  max_steps: int | None = None) -> Outcome:
        mode = "text" if self.protocol == "text" else "tools"
        user = task.description if not context else f"{task.description}\n\n{context}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system(mode)},
                                          {"role": "user", "content": user}]
        names = set(self.tools)
        steps = max_steps if max_steps is not None else task.max_steps
        for _ in range(steps):
            started = time.time()
            try:
                reply = await self.model.chat(messages, self.specs if mode == "tools" else None)
            except Exception as exc:
                if not (mode == "tools" and self.protocol == "auto" and rejects_tools(exc)):
                    return Outcome(False, "", f"LLM call failed: {exc}", ErrorType.llm_error)
                mode = "text"  # the endpoint refused `tools`: describe them in the prompt instead
                messages[0] = {"role": "system", "content": self.system(mode)}
                try:
                    reply = await self.model.chat(messages, None)
                except Exception as exc2:
                    return Outcome(False, "", f"LLM call failed: {exc2}", ErrorType.llm_error)
            native = mode == "tools" and bool(reply.tool_calls)
            calls = list(reply.tool_calls) if native else []
            answer = None
            if not native:
                call, answer = parse_text_reply(reply.content or "", names)
                calls = [call] if call else []
            base = dict(timestamp=started, thinking=thinking_of(reply), llm=reply.exchange)
            if not calls:
                if answer is None:
                    answer = (reply.content or "").strip()
                if not answer:
                    await emit(Step(step_id=1, action_type="no_action", action_params={},
                                    observation="", success=False,
                                    error="the model replied with neither a tool call nor an answer",
                                    duration=time.time() - started, **base))
                    messages.append({"role": "assistant", "content": reply.content or ""})
                    messages.append({"role": "user", "content": "Reply with one tool call, or "
                                     "give the final answer."})
                    continue
                await emit(Step(step_id=1, action_type="final_answer",
                                action_params={"answer": answer}, observation="", success=True,
                                duration=time.time() - started, **base))
                return Outcome(True, answer)
            results: list[tuple[ToolCall, ToolResult]] = []
            for call in calls:
                if call.name == "finish":
                    answer = str(call.arguments.get("answer", call.arguments.get(
                        "result", call.arguments.get("_raw", ""))))
                    break
                results.append((call, await self._run_tool(call)))
            await emit(self._step(calls, results, answer, started, base))
            if answer is not None:
                return Outcome(True, answer)
            if native:
                messages.append(reply.message or _assistant(reply))
                for call, result in results:
                    messages.append({"role": "tool", "tool_call_id": call.id or "",
                                     "content": self._clip(result.observation)})
            else:
                messages.append({"role": "assistant", "content": reply.content or ""})
                if len(results) == 1:
                    text = f"Observation:\n{self._clip(results[0][1].observation)}"
                else:
                    text = "\n\n".join(f"Observation from {c.name}:\n{self._clip(r.observation)}"
                                       for c, r in results)
                messages.append({"role": "user", "content": text})
        return Outcome(False, "", f"no final answer within {steps} steps", ErrorType.max_steps)

    def _clip(self, text: str) -> str:
        limit = self.observation_limit
        if len(text) <= limit:
            return text
        return f"{text[:limit]}\n[truncated: {len(text) - limit} more characters]"

    async def _run_tool(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            available = ", ".join([*self.tools, "finish"])
            return ToolResult(f"Unknown tool {call.name!r}. Available tools: {available}.",
                              False, "unknown tool")
        try:
            return await tool.run(dict(call.arguments))
        except Exception as exc:  # a tool bug or a bad argument must not end the task
            return ToolResult(f"{call.name} failed: {type(exc).__name__}: {exc}", False,
                              f"{type(exc).__name__}: {exc}"[:500])

    @staticmethod
    def _step(calls: list[ToolCall], results: list[tuple[ToolCall, ToolResult]],
              answer: str | None, started: float, base: dict[str, Any]) -> Step:
        ok = all(r.ok for _, r in results)
        error = next((r.error or "tool failed" for _, r in results if not r.ok), None)
        if len(calls) == 1:
            call = calls[0]
            if call.name == "finish":
                return Step(step_id=1, action_type="final_answer", action_params={"answer": answer},
                            observation="", success=True, duration=time.time() - started, **base)
            action, params = call.name, call.arguments
            observation = results[0][1].observation
        else:
            action = "tool_calls"
            params = {"calls": [{"name": c.name, "arguments": c.arguments, "id": c.id}
                                for c in calls]}
            observation = "\n\n".join(f"[{i}] {c.name}:\n{r.observation}"
                                      for i, (c, r) in enumerate(results, 1))
        return Step(step_id=1, action_type=action, action_params=params, observation=observation,
                    success=ok, error=error, duration=time.time() - started, **base)


def _assistant(reply: ModelReply) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
    if reply.tool_calls:
        msg["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": json.dumps(c.arguments)}} for c in reply.tool_calls]
    return msg
