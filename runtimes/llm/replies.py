"""An OpenAI chat completion's JSON body -> the runtimes' ModelReply and its LlmExchange."""

from __future__ import annotations

import json
import uuid
from typing import Any

from adp.runtimes.base import ModelReply, ToolCall
from adp.runtimes.llm.failures import CallFailure
from adp.schemas.contracts import LlmExchange


def parse_reply(
    provider: str,
    model: str,
    request: dict[str, Any],
    raw: dict[str, Any],
    latency: float,
    cached: bool,
) -> ModelReply:
    """The ModelReply of a chat completion's JSON body; its exchange names the provider and the
    model that answered. Raises CallFailure when the body holds no message."""
    try:
        message = raw["choices"][0].get("message") or {}
    except (KeyError, IndexError, AttributeError, TypeError):
        raise CallFailure(
            "bad_response", "reply has no choices[0].message", retry=True, outage=False
        ) from None
    content = message.get("content")
    calls: list[ToolCall] = []
    out_calls: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        text = fn.get("arguments") or "{}"
        try:
            args = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            args = {"_raw": text}
        if not isinstance(args, dict):
            args = {"_raw": args}
        call_id = call.get("id") or f"call_{uuid.uuid4().hex[:12]}"
        calls.append(ToolCall(name=fn.get("name") or "", arguments=args, id=call_id))
        out_calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": fn.get("name") or "",
                    "arguments": text if isinstance(text, str) else json.dumps(text),
                },
            }
        )
    # content "" rather than null beside tool calls: llama.cpp's server rejects null there
    assistant: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if out_calls:
        assistant["tool_calls"] = out_calls
    usage = raw.get("usage") or {}
    exchange = LlmExchange(
        provider=provider,
        model=model,
        request=request,
        response=raw,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency=latency,
        cached=cached,
    )
    return ModelReply(content=content or "", tool_calls=calls, exchange=exchange, message=assistant)


def snapshot(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts, lists, scalars), so the exchange keeps the request as
    sent while the conversation grows; several times cheaper than copy.deepcopy, which was 2% of
    a runtime's CPU. Anything else is immutable here or kept as is."""
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snapshot(v) for v in value]
    return value
