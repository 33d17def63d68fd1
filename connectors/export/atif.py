"""ATIF, the Agent Trajectory Interchange Format (Harbor's RFC 0001, v1.4), one document per
trajectory.

    step 1   system   the system prompt of the first LLM call
    step 2   user     the task as the agent got it (the first call's user message)
    step n   agent    one per trajectory step with an LLM call: the assistant's text as
                      `message`, the model's own reasoning_content when the endpoint returned
                      one, its native tool calls, the tools' results as `observation` (for a
                      call answered in the next request, exactly what the model was shown
                      there), and per-step `metrics` (tokens, cost_usd; latency and cache in
                      metrics.extra)
    step n   system   a step the runtime took without the model (e.g. opening a web task's
                      start page), with what it observed
The agent's `tool_definitions` are the function tools it was offered (the built-in ones and
those of MCP servers), as the first LLM request that offered tools sent them.
Text-protocol actions (a ```python block) are actions without a tool call: their output is an
observation result without source_call_id, as the RFC allows. Everything adp knows beyond the
RFC's fields (the verdict, the agent's claim, the step's action_type/params and saved files) is
in `extra`.

The JSON schema beside this module (atif-v1.4.schema.json) is derived from the RFC's tables;
`rfc_problems` checks the rules the tables cannot say.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adp.connectors.export.chat import assistant_message
from adp.schemas.contracts import Step, Trajectory
from adp.schemas.conversation import with_full_requests

VERSION = "ATIF-v1.4"
SCHEMA_FILE = Path(__file__).with_name("atif-v1.4.schema.json")
AGENT_ONLY = ("model_name", "reasoning_effort", "reasoning_content", "tool_calls", "metrics")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _arguments(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return {"_raw": text}  # the model's text as it was: ATIF wants an object
    return value if isinstance(value, dict) else {"_raw": value}


def _tool_results(steps: list[Step], index: int) -> dict[str, str]:
    """tool_call_id -> the content the model was shown for it in the next LLM call."""
    for later in steps[index + 1 :]:
        if later.llm is not None and isinstance(later.llm.request, dict):
            return {
                m.get("tool_call_id"): m.get("content") or ""
                for m in later.llm.request.get("messages") or []
                if isinstance(m, dict) and m.get("role") == "tool"
            }
    return {}


def _agent_step(step: Step, index: int, steps: list[Step], step_id: int) -> dict[str, Any]:
    ex = step.llm
    reply = assistant_message(ex, step.step_id) or {"content": ""}
    raw = (
        ((ex.response or {}).get("choices") or [{}])[0].get("message") or {}
        if isinstance(ex.response, dict)
        else {}
    )
    out: dict[str, Any] = {
        "step_id": step_id,
        "timestamp": iso(step.timestamp),
        "source": "agent",
        "model_name": ex.model,
        "message": reply.get("content") or "",
    }
    if isinstance(raw.get("reasoning_content"), str) and raw["reasoning_content"]:
        out["reasoning_content"] = raw["reasoning_content"]
    calls = reply.get("tool_calls") or []
    results = []
    if calls:
        out["tool_calls"] = [
            {
                "tool_call_id": c["id"],
                "function_name": c["function"]["name"],
                "arguments": _arguments(c["function"]["arguments"]),
            }
            for c in calls
        ]
        answered = _tool_results(steps, index)
        acted = [c for c in calls if c["function"]["name"] != "finish"]
        for c in acted:
            if c["id"] in answered:
                results.append({"source_call_id": c["id"], "content": answered[c["id"]]})
            elif len(acted) == 1 and step.observation:
                results.append({"source_call_id": c["id"], "content": step.observation})
    elif step.observation:
        results.append({"content": step.observation})
    if results:
        out["observation"] = {"results": results}
    metrics: dict[str, Any] = {
        "prompt_tokens": ex.prompt_tokens,
        "completion_tokens": ex.completion_tokens,
        "extra": {"provider": ex.provider, "latency": ex.latency, "cached": ex.cached},
    }
    if ex.cost_usd is not None:
        metrics["cost_usd"] = ex.cost_usd
    if ex.prompt_token_ids and ex.completion_token_ids:  # v1.4's token-exact fields
        metrics["prompt_token_ids"] = ex.prompt_token_ids
        metrics["completion_token_ids"] = ex.completion_token_ids
    if ex.completion_logprobs:
        metrics["logprobs"] = ex.completion_logprobs
    out["metrics"] = metrics
    out["extra"] = _step_extra(step)
    return out


def _step_extra(step: Step) -> dict[str, Any]:
    extra = {
        "adp_step_id": step.step_id,
        "action_type": step.action_type,
        "action_params": step.action_params,
        "success": step.success,
        "error": step.error,
        "duration": step.duration,
    }
    if step.artifacts:  # the files the step saved (their bytes sit beside the trajectory)
        extra["artifacts"] = [
            a.model_dump(mode="json", exclude={"location"}) for a in step.artifacts
        ]
    return extra


def tool_definitions(t: Trajectory) -> list[dict[str, Any]]:
    """The function tools the agent was offered (built-in and MCP), as its first request that
    offered any sent them."""
    for step in t.steps:
        if step.llm is not None and isinstance(step.llm.request, dict):
            tools = step.llm.request.get("tools")
            if tools:
                return list(tools)
    return []


def atif_document(t: Trajectory, agent_version: str) -> dict[str, Any]:
    t = with_full_requests(t)  # each request as the model got it (schemas/conversation.py)
    steps: list[dict[str, Any]] = []
    first = next(
        (s.llm for s in t.steps if s.llm is not None and isinstance(s.llm.request, dict)), None
    )
    opening = (first.request.get("messages") or []) if first is not None else []
    system = next((m.get("content") for m in opening[:1] if m.get("role") == "system"), None)
    user = next((m.get("content") for m in opening if m.get("role") == "user"), t.description)
    started = iso(t.metadata.started_at)
    if system:
        steps.append({"step_id": 1, "timestamp": started, "source": "system", "message": system})
    steps.append(
        {"step_id": len(steps) + 1, "timestamp": started, "source": "user", "message": user or ""}
    )
    for i, step in enumerate(t.steps):
        step_id = len(steps) + 1
        if step.llm is not None:
            steps.append(_agent_step(step, i, t.steps, step_id))
        else:
            entry = {
                "step_id": step_id,
                "timestamp": iso(step.timestamp),
                "source": "system",
                "message": "",
                "extra": _step_extra(step),
            }
            if step.observation:
                entry["observation"] = {"results": [{"content": step.observation}]}
            steps.append(entry)
    m = t.metadata
    final: dict[str, Any] = {
        "total_prompt_tokens": m.prompt_tokens,
        "total_completion_tokens": m.completion_tokens,
        "total_steps": len(steps),
        "extra": {"llm_calls": m.llm_calls, "cached_llm_calls": m.cached_llm_calls},
    }
    if m.cost_usd is not None:
        final["total_cost_usd"] = m.cost_usd
    agent: dict[str, Any] = {
        "name": f"adp-{t.task_type}",
        "version": agent_version,
        "extra": {"runtime_id": m.runtime_id},
    }
    if first is not None:
        agent["model_name"] = first.model
        agent["extra"]["provider"] = first.provider
    tools = tool_definitions(t)
    if tools:
        agent["tool_definitions"] = tools
    return {
        "schema_version": VERSION,
        "session_id": f"{t.key}@{m.attempt_id}",
        "agent": agent,
        "steps": steps,
        "notes": "Exported by the Agent Data Platform (adp export --format atif) from the raw "
        "LLM exchanges and tool outputs of one attempt.",
        "final_metrics": final,
        "extra": {
            "task_id": t.task_id,
            "task_type": t.task_type,
            "key": t.key,
            "sample_index": t.sample_index,
            "description": t.description,
            "final_result": t.final_result,
            "success": t.success,
            "claimed_success": t.claimed,
            "verification": t.verification.model_dump(mode="json") if t.verification else None,
            "error": m.error,
            "error_type": m.error_type,
            "finished_at": iso(m.finished_at),
            "task": m.task,
        },
    }


def rfc_problems(doc: dict[str, Any]) -> list[str]:
    """The RFC's rules beyond the schema: step_id 1..n in order, ISO 8601 timestamps,
    agent-only fields on agent steps only, source_call_id naming a tool call of its step."""
    problems = []
    for i, step in enumerate(doc.get("steps", []), 1):
        if step.get("step_id") != i:
            problems.append(f"steps[{i - 1}]: step_id {step.get('step_id')} where {i} belongs")
        ts = step.get("timestamp")
        if ts is not None:
            try:
                datetime.fromisoformat(ts.replace("Z", "+00:00"))
            except (TypeError, ValueError):
                problems.append(f"steps[{i - 1}]: timestamp {ts!r} is not ISO 8601")
        if step.get("source") != "agent":
            for key in AGENT_ONLY:
                if key in step:
                    problems.append(f"steps[{i - 1}]: {key} on a {step.get('source')} step")
        ids = [c.get("tool_call_id") for c in step.get("tool_calls") or []]
        if len(ids) != len(set(ids)):
            problems.append(f"steps[{i - 1}]: a tool_call_id used twice")
        for r in (step.get("observation") or {}).get("results", []):
            if r.get("source_call_id") is not None and r["source_call_id"] not in ids:
                problems.append(
                    f"steps[{i - 1}]: source_call_id {r['source_call_id']!r} "
                    "names no tool call of this step"
                )
    return problems
