"""Conversations rebuilt from the raw LLM exchanges, and the chat rules they must keep.

A trajectory's steps carry each LLM call as it happened: the request (messages, tools) and the
raw response (a request stored as what it adds to an earlier call's is rebuilt whole first:
schemas/conversation.py). The conversation of a task is the last call's request messages plus the
assistant message of its response: the history the agent kept is in that request, written by
the agent loop from the earlier responses and the tools' real outputs. Nothing is invented. When
the history was rewritten mid-task (an endpoint that refused `tools` made the agent switch to
the text protocol and replace its system prompt), each unbroken run of calls is its own
conversation (`segment` 0, 1, ...): every one is a context the model really saw.

`chat_problems` checks what OpenAI fine-tuning and TRL's SFTTrainer need: known roles, a system
message only first, no empty assistant turn, every tool message answering a call of the assistant
message before it, every call but those of the final message answered, call arguments that are
JSON, and an assistant message last. A conversation that breaks one is left out of an export
(the dataset card says how many and why), never repaired.

ShareGPT (LLaMA-Factory's layout): `conversations` of {"from": human | gpt | function_call |
observation, "value": text}, a `system` column and `tools` as a JSON string. A tool call's value
is {"name", "arguments"} (a list for several calls); the text beside a call is not carried (the
format has no place for it: use chat or ATIF to keep it); the results of several calls are one
observation holding their list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adp.schemas.contracts import LlmExchange, Trajectory
from adp.schemas.conversation import with_full_requests

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    provider: str
    model: str
    segment: int = 0


def assistant_message(exchange: LlmExchange, step_id: int) -> dict[str, Any] | None:
    """The response's assistant message in chat format (content always a string, tool-call
    arguments as the JSON text the model wrote); None if the response has no message."""
    try:
        raw = exchange.response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(raw, dict):
        return None
    message: dict[str, Any] = {"role": "assistant", "content": raw.get("content") or ""}
    calls = []
    for i, call in enumerate(raw.get("tool_calls") or []):
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        calls.append(
            {
                "id": call.get("id") or f"call_{step_id}_{i}",
                "type": "function",
                "function": {
                    "name": fn.get("name") or "",
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments or {}, ensure_ascii=False),
                },
            }
        )
    if calls:
        message["tool_calls"] = calls
    return message


def clean(message: dict[str, Any]) -> dict[str, Any]:
    """A request message with the chat keys only (the agent loop writes no others)."""
    out: dict[str, Any] = {"role": message.get("role"), "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    if message.get("role") == "tool":
        out["tool_call_id"] = message.get("tool_call_id")
    return out


def conversations(trajectory: Trajectory) -> list[Conversation]:
    """The conversations of a trajectory, from its exchanges (none if it made no LLM call).
    Requests stored as what they add to an earlier call's are rebuilt whole first (raises
    schemas.conversation.ConversationError where one cannot be)."""
    trajectory = with_full_requests(trajectory)
    calls = [
        (s.step_id, s.llm)
        for s in trajectory.steps
        if s.llm is not None
        and isinstance(s.llm.request, dict)
        and isinstance(s.llm.request.get("messages"), list)
    ]
    chains: list[list[tuple[int, LlmExchange]]] = []
    for step_id, exchange in calls:
        messages = exchange.request["messages"]
        if chains:
            previous = chains[-1][-1][1].request["messages"]
            if len(messages) > len(previous) and messages[: len(previous)] == previous:
                chains[-1].append((step_id, exchange))
                continue
        chains.append([(step_id, exchange)])
    out = []
    for segment, chain in enumerate(chains):
        step_id, last = chain[-1]
        reply = assistant_message(last, step_id)
        if reply is None:
            continue
        tools = last.request.get("tools") or None
        out.append(
            Conversation(
                [clean(m) for m in last.request["messages"]] + [reply],
                tools,
                last.provider,
                last.model,
                segment,
            )
        )
    return out


def chat_problems(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[str]:
    """Every way the conversation breaks the chat format's rules (empty: it keeps them)."""
    problems = []
    pending: set[str] = set()
    if not messages:
        return ["no messages"]
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            problems.append(f"message {i}: unknown role {role!r}")
            continue
        if not isinstance(m.get("content"), str):
            problems.append(f"message {i}: content is not text")
        if role == "system" and i != 0:
            problems.append(f"message {i}: a system message after the first")
        if role in ("user", "assistant") and pending:
            problems.append(f"message {i}: tool calls {sorted(pending)} were never answered")
            pending = set()
        if role == "assistant":
            calls = m.get("tool_calls") or []
            if not calls and not (m.get("content") or "").strip():
                problems.append(f"message {i}: an empty assistant turn")
            for call in calls:
                fn = call.get("function") or {}
                if not call.get("id") or call.get("type") != "function" or not fn.get("name"):
                    problems.append(f"message {i}: a tool call without id, type or name")
                    continue
                try:
                    json.loads(fn.get("arguments", ""))
                except (TypeError, json.JSONDecodeError):
                    problems.append(f"message {i}: arguments of {fn['name']} are not JSON")
                pending.add(call["id"])
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                problems.append(
                    f"message {i}: tool result for {m.get('tool_call_id')!r}, "
                    "which the assistant message before did not call"
                )
            pending.discard(m.get("tool_call_id"))
    if messages[-1].get("role") != "assistant":
        problems.append("the last message is not the assistant's")
    names = {t.get("function", {}).get("name") for t in tools or []}
    for m in messages:
        for call in m.get("tool_calls") or []:
            name = (call.get("function") or {}).get("name")
            if tools and name not in names:
                problems.append(f"a call of {name!r}, which is not among the tools")
    return problems


def chat_row(conv: Conversation, arguments: str = "string") -> dict[str, Any]:
    """{"messages", "tools"?}: the OpenAI fine-tuning line. arguments="object" parses each
    call's arguments (for chat templates that want a dict)."""
    messages = conv.messages
    if arguments == "object":
        messages = [
            {
                **m,
                "tool_calls": [
                    {
                        **c,
                        "function": {
                            **c["function"],
                            "arguments": json.loads(c["function"]["arguments"]),
                        },
                    }
                    for c in m["tool_calls"]
                ],
            }
            if m.get("tool_calls")
            else m
            for m in messages
        ]
    row: dict[str, Any] = {"messages": messages}
    if conv.tools:
        row["tools"] = conv.tools
    return row


def _call_value(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    try:
        arguments = json.loads(fn["arguments"])
    except (TypeError, json.JSONDecodeError):
        arguments = fn["arguments"]
    return {"name": fn["name"], "arguments": arguments}


def sharegpt_row(conv: Conversation) -> dict[str, Any]:
    messages = list(conv.messages)
    system = messages.pop(0)["content"] if messages and messages[0]["role"] == "system" else ""
    turns: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append({"from": "human", "value": m["content"]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = [_call_value(c) for c in m["tool_calls"]]
            turns.append(
                {
                    "from": "function_call",
                    "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False),
                }
            )
        elif m["role"] == "assistant":
            turns.append({"from": "gpt", "value": m["content"]})
        elif turns and turns[-1]["from"] == "observation" and turns[-1].get("_many"):
            turns[-1]["_many"].append(m["content"])
        else:
            turns.append({"from": "observation", "value": m["content"], "_many": [m["content"]]})
    for t in turns:
        many = t.pop("_many", None)
        if many is not None and len(many) > 1:
            t["value"] = json.dumps(many, ensure_ascii=False)
    tools = [t.get("function", t) for t in conv.tools or []]
    return {
        "conversations": turns,
        "system": system,
        "tools": json.dumps(tools, ensure_ascii=False) if tools else "",
    }


def sharegpt_problems(row: dict[str, Any]) -> list[str]:
    """LLaMA-Factory's rule: human/observation at odd positions, gpt/function_call at even."""
    problems = []
    for i, turn in enumerate(row["conversations"]):
        want = ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
        if turn["from"] not in want:
            problems.append(f"turn {i + 1}: {turn['from']} where {' or '.join(want)} belongs")
    if len(row["conversations"]) % 2:
        problems.append("an odd number of turns (the last is not the model's)")
    return problems
