"""The one agent loop (runtimes/agent.py) as pure logic: a scripted Model and an echo tool, no
HTTP, sandbox or browser (those are in the runtime tests). What each dialect parses, how steps
are reported and what the model is told next."""

from __future__ import annotations

from typing import Any

from adp.runtimes.agent import Agent
from adp.runtimes.base import ModelReply, StepReport, ToolCall
from adp.runtimes.tools.base import Tool, ToolResult
from adp.schemas.contracts import ErrorType, Task


class ScriptedModel:
    def __init__(self, *replies: Any):
        self.replies, self.requests = list(replies), []

    async def chat(self, messages, tools=None) -> ModelReply:
        self.requests.append(([dict(m) for m in messages], tools))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def echo_tool(name: str = "python", action_type: str | None = None) -> Tool:
    async def run(args: dict[str, Any]) -> ToolResult:
        code = args.get("code", "")
        return ToolResult(f"ran {code.strip()}\n", ok="fail" not in code, error="boom")

    return Tool(
        name,
        "echo",
        {"type": "object", "properties": {"code": {"type": "string"}}},
        run,
        action_type,
    )


async def drive(agent: Agent, **task: Any) -> tuple[Any, list[StepReport]]:
    steps: list[StepReport] = []

    async def emit(step: StepReport) -> None:
        steps.append(step)

    outcome = await agent.run(
        Task(task_id="t", task_type="code", description="do it", **task), emit
    )
    return outcome, steps


async def test_code_dialect_runs_bare_fences_and_ends_at_the_final_answer():
    model = ScriptedModel(
        ModelReply("Let me run it.\n```\nprint(1)\n```"),
        ModelReply("```python\nfail()\n```"),
        ModelReply("FINAL ANSWER: 1\n```python\nprint(2)\n```"),
    )
    agent = Agent(model, [echo_tool(action_type="code_execution")], "PROMPT", protocol="code")
    outcome, steps = await drive(agent)
    assert outcome.success and outcome.final_result == "1\n```python\nprint(2)\n```"
    assert [s.action_type for s in steps] == ["code_execution", "code_execution", "final_answer"]
    assert (
        steps[0].action_params == {"code": "print(1)\n"} and steps[0].thinking == "Let me run it."
    )
    assert steps[1].success is False and steps[1].error == "boom"
    messages, tools = model.requests[1]
    assert tools is None and messages[0] == {"role": "system", "content": "PROMPT"}
    assert messages[-1] == {"role": "user", "content": "Observation:\nran print(1)\n"}


async def test_an_empty_reply_is_no_action_and_the_model_is_nudged():
    model = ScriptedModel(ModelReply(""), ModelReply("The answer is 4."))
    outcome, steps = await drive(Agent(model, [echo_tool()], "P", protocol="code"))
    assert [s.action_type for s in steps] == ["no_action", "final_answer"]
    assert steps[0].success is False and outcome.final_result == "The answer is 4."
    assert "Reply with one tool call" in model.requests[1][0][-1]["content"]


async def test_native_calls_then_finish_and_tool_messages():
    calls = [ToolCall("python", {"code": "a"}, "c1"), ToolCall("nope", {}, "c2")]
    model = ScriptedModel(
        ModelReply("", calls, message={"role": "assistant", "content": ""}),
        ModelReply("", [ToolCall("finish", {"answer": "done"}, "c3")]),
    )
    outcome, steps = await drive(Agent(model, [echo_tool()], "P", protocol="tools"))
    assert outcome.success and outcome.final_result == "done"
    assert [s.action_type for s in steps] == ["tool_calls", "final_answer"]
    assert steps[0].success is False and steps[0].error == "unknown tool"
    assert steps[0].observation.startswith("[1] python:\nran a\n\n\n[2] nope:\nUnknown tool")
    sent = model.requests[1][0]
    assert [m["role"] for m in sent[-2:]] == ["tool", "tool"] and sent[-2]["tool_call_id"] == "c1"
    assert {t["function"]["name"] for t in model.requests[0][1]} == {"python", "finish"}


async def test_auto_falls_back_to_text_when_tools_are_refused_and_gives_up_after_max_steps():
    refused = RuntimeError("Error code: 400: tools are not supported")
    model = ScriptedModel(
        refused,
        ModelReply('```json\n{"tool": "python", "arguments": {"code": "x"}}\n```'),
        ModelReply("```python\nprint(3)\n```"),
    )
    outcome, steps = await drive(Agent(model, [echo_tool()], "P"), max_steps=2)
    assert not outcome.success and outcome.error_type == ErrorType.max_steps
    assert [s.action_type for s in steps] == ["python", "python"]
    assert (
        model.requests[1][1] is None
        and "- python(code: string?)" in model.requests[1][0][0]["content"]
    )


async def test_a_failing_model_is_an_llm_error():
    outcome, steps = await drive(Agent(ScriptedModel(RuntimeError("503: down")), [], "P"))
    assert (
        outcome.error_type == ErrorType.llm_error and "503: down" in outcome.error and steps == []
    )
