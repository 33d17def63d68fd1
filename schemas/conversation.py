"""A step's LLM request stored as what it adds to its attempt's conversation, and rebuilt.

An agent sends the whole conversation so far with every call, so storing each request whole
makes an attempt's bytes grow with the square of its steps. On the wire (schema v4) a step's
LlmExchange may instead hold only the messages its call added:

    prefix_step = j, prefix_messages = p:
        full request = the step's request with
                       messages = (full request of step j)["messages"][:p] + request["messages"]

and prefix_step None is a request stored whole (every record written before v4). Every other
key of the request (model, tools, temperature, ...) is stored whole in each step, in its place:
rebuilding replaces the value of "messages" where it stands, so the rebuilt request has the
original key order and encodes to the original bytes.

`compact_request` is the writer's half (streams/runtime/step_encoding.py, against the previous
call of the same attempt); `Requests`, `full_steps` and `with_full_requests` are the readers'
(exports, the console, the bench's baseline). Pure: no I/O, nothing but the contracts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from adp.schemas.contracts import LlmExchange, Step, Trajectory


class ConversationError(ValueError):
    """A step's request refers to a call it cannot be rebuilt from (the message says which)."""


def _messages(request: Any) -> list | None:
    if isinstance(request, dict):
        messages = request.get("messages")
        if isinstance(messages, list):
            return messages
    return None


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON-shaped values encode to the same bytes: `==` with the types and the key
    order kept (1 == 1.0 == True and {"a", "b"} == {"b", "a"} in Python, not in JSON text)."""
    if a is b:  # one object encodes one way
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            ka == kb and same_json(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def common_prefix(messages: Sequence[Any], previous: Sequence[Any]) -> int:
    """How many leading messages the two lists share, byte for byte."""
    n = 0
    for mine, theirs in zip(messages, previous):
        if not same_json(mine, theirs):
            break
        n += 1
    return n


def compact_request(request: Any, previous: Any) -> tuple[Any, int]:
    """`request` stored against `previous` (the full request of an earlier call): (the request
    with only its messages after the shared prefix, the prefix's length). A prefix of 0 (no
    shared message, or a request without a list of messages) gives the request as it is."""
    messages, before = _messages(request), _messages(previous)
    if messages is None or before is None:
        return request, 0
    prefix = common_prefix(messages, before)
    if prefix == 0:
        return request, 0
    compact = dict(request)  # a new dict with "messages" where it stood
    compact["messages"] = messages[prefix:]
    return compact, prefix


def full_request(request: Any, prefix_messages: int, base: Any) -> Any:
    """The request stored as what it adds after the first `prefix_messages` of `base` (the
    full request it refers to), whole again."""
    messages, before = _messages(request), _messages(base)
    if messages is None:
        raise ConversationError("a request stored with a prefix has no list of messages")
    if before is None or prefix_messages > len(before) or prefix_messages < 0:
        raise ConversationError(
            f"its prefix of {prefix_messages} messages is not in the request it refers to "
            f"({'no messages' if before is None else f'{len(before)} messages'})"
        )
    full = dict(request)
    full["messages"] = before[:prefix_messages] + messages
    return full


class Requests:
    """Rebuilds the full requests of one attempt's steps, fed in step order. A rebuilt request
    shares its message objects with the ones it was built from: rebuilding all n steps costs
    n lists, not n conversations."""

    def __init__(self) -> None:
        self._full: dict[int, Any] = {}

    def full(
        self, step_id: int, request: Any, prefix_step: int | None, prefix_messages: int
    ) -> Any:
        """The full request of `step_id` (a request with prefix_step None is returned as is)."""
        if prefix_step is None:
            out = request
        else:
            if prefix_step not in self._full:
                raise ConversationError(
                    f"step {step_id}'s request refers to step {prefix_step}, which has no "
                    "request before it"
                )
            try:
                out = full_request(request, prefix_messages, self._full[prefix_step])
            except ConversationError as exc:
                raise ConversationError(f"step {step_id}'s request: {exc}") from None
        self._full[step_id] = out
        return out

    def exchange(self, step_id: int, llm: LlmExchange) -> LlmExchange:
        """The exchange with its full request (the same object when it is stored whole)."""
        request = self.full(step_id, llm.request, llm.prefix_step, llm.prefix_messages)
        if llm.prefix_step is None:
            return llm
        return llm.model_copy(
            update={"request": request, "prefix_step": None, "prefix_messages": 0}
        )

    def document(self, step_id: int, llm: dict) -> dict:
        """The same for an exchange as a JSON document (a stored trajectory's, any version)."""
        prefix_step = llm.get("prefix_step")
        request = self.full(step_id, llm.get("request"), prefix_step, llm.get("prefix_messages", 0))
        if prefix_step is None:
            return llm
        return {**llm, "request": request, "prefix_step": None, "prefix_messages": 0}


def full_steps(steps: Iterable[Step]) -> list[Step]:
    """The steps with every LLM request whole (in step order; steps without a call as they are).
    Raises ConversationError where a request cannot be rebuilt."""
    requests = Requests()
    out = []
    for step in steps:
        if step.llm is None:
            out.append(step)
            continue
        llm = requests.exchange(step.step_id, step.llm)
        out.append(step if llm is step.llm else step.model_copy(update={"llm": llm}))
    return out


def with_full_requests(trajectory: Trajectory) -> Trajectory:
    """The trajectory with every step's LLM request whole, for readers that want each request as
    the model got it (exports); itself when no request is stored with a prefix."""
    if all(s.llm is None or s.llm.prefix_step is None for s in trajectory.steps):
        return trajectory
    return trajectory.model_copy(update={"steps": full_steps(trajectory.steps)})


def full_step_documents(steps: Sequence[Any]) -> list[Any]:
    """The steps of a trajectory document (JSON) with every LLM request whole; anything that is
    not a step with an exchange is passed through."""
    requests = Requests()
    out = []
    for step in steps:
        llm = step.get("llm") if isinstance(step, dict) else None
        if not isinstance(llm, dict):
            out.append(step)
            continue
        full = requests.document(step.get("step_id"), llm)
        out.append(step if full is llm else {**step, "llm": full})
    return out
