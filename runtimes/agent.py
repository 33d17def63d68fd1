"""The one agent loop every built-in runtime drives: query -> parse -> act -> observe.

    query    one model call with the conversation so far (falling back from the "tools"
             protocol to "text" when the endpoint refuses tool calling)
    parse    the reply -> a Decision: tool calls, a final answer, or neither (dialects.py)
    act      run each tool call for real (a tool that raises becomes an error observation)
    observe  report the step (StepReport through `emit`), then give the model what the tools
             returned, in the shape its protocol expects

One step per model call: action_type is the tool's action_type (its name by default), or
"final_answer", or "tool_calls" when one reply asked for several tools (action_params
{"calls": [...]}), or "no_action" when the reply held nothing usable; observation is exactly what
the tool returned; thinking the model's own words; llm the raw exchange; artifacts the files
the tools wrote (their bytes ride along as StepReport.blobs). The task ends at the
first final answer (a FINAL ANSWER line, a `finish` call, or prose) or after max_steps calls.

The code runtime is this loop with the python tool in the "code" dialect; the web and reasoning
runtimes use it with browser (and python) tools in "auto". In the spirit of mini-swe-agent:
the loop knows a Model and tools, nothing of Kafka, browsers or sandboxes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from adp.core.errors import DependencyOutage
from adp.runtimes.base import EmitStep, Model, ModelReply, Outcome, StepReport, ToolCall
from adp.runtimes.dialects import DIALECTS, FINISH_SPEC, Decision, rejects_tools, thinking_of
from adp.runtimes.tools.base import Tool, ToolResult
from adp.schemas.contracts import Artifact, ErrorType, Task

PROTOCOLS = ("auto", "tools", "text", "code")
NUDGE = "Reply with one tool call, or give the final answer."


class LlmFailed(Exception):
    """The model could not be queried: the request failed with every provider. (An outage of
    the endpoint is no such failure: DependencyOutage goes through, to the runtime worker.)"""


@dataclass
class Conversation:
    """The messages of one task and the dialect they are in."""

    messages: list[dict[str, Any]]
    dialect_name: str

    @property
    def dialect(self):
        return DIALECTS[self.dialect_name]


class Agent:
    """Drive `model` with `tools` until it answers or runs out of steps.

    `protocol`: "auto" (tools, falling back to text for the rest of the task when the endpoint
    rejects `tools` with a 4xx other than 408/409/429), "tools", "text" or "code"."""

    def __init__(
        self,
        model: Model,
        tools: list[Tool],
        system_prompt: str,
        *,
        protocol: str = "auto",
        observation_limit: int = 12000,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.model, self.system_prompt, self.protocol = model, system_prompt, protocol
        self.tools = {name: t for t in tools for name in (t.name, *t.aliases)}
        self.specs = [t.spec() for t in tools] + [FINISH_SPEC]
        self.observation_limit = observation_limit

    async def run(
        self,
        task: Task,
        emit: EmitStep,
        *,
        context: str | None = None,
        max_steps: int | None = None,
    ) -> Outcome:
        chat = self.start(task, context)
        steps = max_steps if max_steps is not None else task.max_steps
        for _ in range(steps):
            started = time.time()
            try:
                reply = await self.query(chat)
            except LlmFailed as exc:
                return Outcome(False, "", f"LLM call failed: {exc}", ErrorType.llm_error)
            decision = chat.dialect.parse(reply, set(self.tools))
            results = await self.act(decision)
            await emit(self.report(decision, results, reply, started))
            if decision.answer is not None:
                return Outcome(True, decision.answer)
            self.observe(chat, reply, decision, results)
        return Outcome(False, "", f"no final answer within {steps} steps", ErrorType.max_steps)

    # ---- the steps of the loop ---------------------------------------------------------------

    def start(self, task: Task, context: str | None) -> Conversation:
        name = "tools" if self.protocol == "auto" else self.protocol
        user = task.description if not context else f"{task.description}\n\n{context}"
        system = DIALECTS[name].system(self.system_prompt, self.specs)
        return Conversation(
            [{"role": "system", "content": system}, {"role": "user", "content": user}], name
        )

    async def query(self, chat: Conversation) -> ModelReply:
        try:
            return await self.model.chat(chat.messages, chat.dialect.request_tools(self.specs))
        except DependencyOutage:
            raise
        except Exception as exc:
            if not (
                self.protocol == "auto" and chat.dialect_name == "tools" and rejects_tools(exc)
            ):
                raise LlmFailed(str(exc)) from exc
        # the endpoint refused `tools`: describe them in the prompt instead, for the whole task
        chat.dialect_name = "text"
        chat.messages[0] = {
            "role": "system",
            "content": chat.dialect.system(self.system_prompt, self.specs),
        }
        try:
            return await self.model.chat(chat.messages, None)
        except DependencyOutage:
            raise
        except Exception as exc:
            raise LlmFailed(str(exc)) from exc

    async def act(self, decision: Decision) -> list[tuple[ToolCall, ToolResult]]:
        """Run the calls in order, up to a `finish`."""
        results = []
        for call in decision.calls:
            if call.name == "finish":
                break
            results.append((call, await self.run_tool(call)))
        return results

    async def run_tool(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            available = ", ".join([*dict.fromkeys(t.name for t in self.tools.values()), "finish"])
            return ToolResult(
                f"Unknown tool {call.name!r}. Available tools: {available}.", False, "unknown tool"
            )
        try:
            return await tool.run(dict(call.arguments))
        except DependencyOutage:  # the sandbox or browser is down: not the agent's doing
            raise
        except Exception as exc:  # a tool bug or a bad argument must not end the task
            return ToolResult(
                f"{call.name} failed: {type(exc).__name__}: {exc}",
                False,
                f"{type(exc).__name__}: {exc}"[:500],
            )

    def report(
        self,
        decision: Decision,
        results: list[tuple[ToolCall, ToolResult]],
        reply: ModelReply,
        started: float,
    ) -> StepReport:
        """The step this model call made."""
        calls = decision.calls
        fields: dict[str, Any] = dict(
            timestamp=started,
            thinking=thinking_of(reply),
            llm=reply.exchange,
            observation="",
            success=True,
        )
        if not calls or (len(calls) == 1 and calls[0].name == "finish"):
            if decision.answer is None:
                fields.update(
                    action_type="no_action",
                    action_params={},
                    success=False,
                    error="the model replied with neither a tool call nor an answer",
                )
            else:
                fields.update(action_type="final_answer", action_params={"answer": decision.answer})
        elif len(calls) == 1:
            call, result = results[0]
            tool = self.tools.get(call.name)
            fields.update(
                action_type=(tool and tool.action_type) or call.name,
                action_params=tool.params(call.arguments) if tool else call.arguments,
                observation=result.observation,
                success=result.ok,
                error=None if result.ok else result.error or "tool failed",
            )
        else:
            failed = next((r for _, r in results if not r.ok), None)
            fields.update(
                action_type="tool_calls",
                action_params={"calls": [self.call_params(c) for c in calls]},
                observation="\n\n".join(
                    f"[{i}] {c.name}:\n{r.observation}" for i, (c, r) in enumerate(results, 1)
                ),
                success=failed is None,
                error=None if failed is None else failed.error or "tool failed",
            )
        report = StepReport(duration=time.time() - started, **fields)
        for _, result in results:
            for f in result.files:
                report.artifacts.append(
                    Artifact(
                        name=f.name,
                        size=f.size,
                        media_type=f.media_type,
                        sha256=f.sha256,
                        kept=f.kept,
                        note=f.note,
                    )
                )
                if f.kept:
                    report.blobs[f.sha256] = f.data
        return report

    def call_params(self, call: ToolCall) -> dict[str, Any]:
        """One call of a step that made several: its name and id, and its action_params."""
        tool = self.tools.get(call.name)
        params = tool.params(call.arguments) if tool else call.arguments
        if params is call.arguments:
            return {"name": call.name, "arguments": call.arguments, "id": call.id}
        return {"name": call.name, "id": call.id, **params}

    def observe(
        self,
        chat: Conversation,
        reply: ModelReply,
        decision: Decision,
        results: list[tuple[ToolCall, ToolResult]],
    ) -> None:
        """Give the model what its actions returned, in the shape its protocol expects."""
        if decision.native:
            chat.messages.append(reply.message or _assistant(reply))
            for call, result in results:
                chat.messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id or "",
                        "content": self.clip(result.observation),
                    }
                )
            return
        chat.messages.append({"role": "assistant", "content": reply.content or ""})
        if not results:
            text = NUDGE
        elif len(results) == 1:
            text = f"Observation:\n{self.clip(results[0][1].observation)}"
        else:
            text = "\n\n".join(
                f"Observation from {c.name}:\n{self.clip(r.observation)}" for c, r in results
            )
        chat.messages.append({"role": "user", "content": text})

    def clip(self, text: str) -> str:
        limit = self.observation_limit
        if len(text) <= limit:
            return text
        return f"{text[:limit]}\n[truncated: {len(text) - limit} more characters]"


def _assistant(reply: ModelReply) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
    if reply.tool_calls:
        msg["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    return msg
