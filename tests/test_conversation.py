"""A step's LLM request stored as what it adds to the conversation (schemas/conversation.py,
streams/runtime/step_encoding.py): whatever the conversation, every request a reader rebuilds
from the wire is the original one byte for byte; records stored whole read as before; a step
over the record limit becomes files of the step, never a failed send."""

from __future__ import annotations

import hashlib
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adp.schemas import codec
from adp.schemas.contracts import LlmExchange, Step, StepEvent, Trajectory
from adp.schemas.conversation import (
    ConversationError,
    compact_request,
    full_step_documents,
    full_steps,
    same_json,
    with_full_requests,
)
from adp.streams.runtime.step_encoding import SMALL, StepEncoding

# JSON-shaped values as an LLM client snapshots them (no NaN: JSON has none)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": values},
    optional={"tool_call_id": st.text(max_size=8), "name": st.text(max_size=8)},
)


@st.composite
def conversations(draw) -> list[dict]:
    """The requests of one attempt: each keeps a prefix of the previous call's messages (all of
    them, usually), sometimes with an earlier message rewritten, and adds new ones; the other
    keys of a request come in any order, before or after "messages"."""
    requests: list[dict] = []
    history: list[dict] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        keep = draw(st.sampled_from([len(history), len(history), 0, len(history) // 2]))
        history = history[:keep] + draw(st.lists(messages, max_size=3))
        if history and draw(st.integers(0, 9)) == 0:  # a rewritten message (text fallback)
            history = [draw(messages), *history[1:]]
        history = [json.loads(json.dumps(m)) for m in history]  # each call snapshots its own
        extra = draw(st.dictionaries(st.sampled_from(["model", "tools", "seed", "t"]), values))
        before = draw(st.booleans())
        request = {**extra, "messages": history} if before else {"messages": history, **extra}
        requests.append(request)
    return requests


def step(step_id: int, request: object, observation: str = "seen") -> Step:
    return Step(
        step_id=step_id,
        action_type="python",
        action_params={"code": "print(1)"},
        observation=observation,
        success=True,
        timestamp=1.0 + step_id,
        duration=0.5,
        llm=LlmExchange(provider="stub", model="m", request=request, response={"id": step_id}),
    )


def wire(s: Step) -> Step:
    """The step as a reader gets it from adp.steps."""
    event = StepEvent(
        event_type="step",
        task_id="t",
        attempt_id="a",
        task_type="code",
        runtime_id="r",
        timestamp=1.0,
        step=s,
    )
    return codec.decode(codec.encode(event), expect=StepEvent).step


def encoded(s: Step) -> bytes:
    event = StepEvent(
        event_type="step",
        task_id="t",
        attempt_id="a",
        task_type="code",
        runtime_id="r",
        timestamp=1.0,
        step=s,
    )
    return codec.encode(event)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_every_request_rebuilds_byte_for_byte(requests):
    original = [step(i, r) for i, r in enumerate(requests, 1)]
    encoding = StepEncoding()
    sent = [wire(encoding.compact(s)) for s in original]
    rebuilt = full_steps(sent)
    for before, after in zip(original, rebuilt, strict=True):
        assert orjson.dumps(after.llm.request) == orjson.dumps(before.llm.request)
        assert encoded(after) == encoded(before)  # the whole step, as the full encoding had it
    # the documents a stored trajectory holds rebuild the same way
    docs = full_step_documents([s.model_dump(mode="json") for s in sent])
    assert [orjson.dumps(d["llm"]["request"]) for d in docs] == [
        orjson.dumps(s.llm.request) for s in original
    ]


def test_a_growing_conversation_is_stored_once():
    history: list[dict] = [{"role": "system", "content": "be brief"}]
    original = []
    for i in range(1, 101):
        history = [*history, {"role": "user", "content": f"observation {i} " + "x" * 1000}]
        original.append(step(i, {"model": "m", "messages": list(history), "temperature": 0}))
    encoding = StepEncoding()
    sent = [encoding.compact(s) for s in original]
    assert [s.llm.prefix_step for s in sent] == [None, *range(1, 100)]
    assert all(len(s.llm.request["messages"]) == 1 for s in sent[1:])
    assert list(sent[5].llm.request) == ["model", "messages", "temperature"]  # keys in place
    full = sum(len(encoded(s)) for s in original)
    compact = sum(len(encoded(s)) for s in sent)
    assert compact * 20 < full  # 100 steps: the full encoding stores ~50 copies of a message
    assert [s.llm.request for s in full_steps(sent)] == [s.llm.request for s in original]


def test_records_stored_whole_read_as_before():
    old = [step(1, {"messages": [{"role": "user", "content": "a"}]}), step(2, "not a dict")]
    assert full_steps(old) == old
    assert all(a is b for a, b in zip(full_steps(old), old, strict=True))
    t = Trajectory.model_validate(
        {
            "task_id": "t",
            "task_type": "code",
            "description": "d",
            "success": True,
            "steps": [s.model_dump(mode="json") for s in old],
            "final_result": "",
            "total_duration": 1.0,
            "metadata": {
                "runtime_id": "r",
                "attempt_id": "a",
                "started_at": 0.0,
                "finished_at": 1.0,
                "llm_calls": 2,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_llm_calls": 0,
                "task": {},
            },
        }
    )
    assert with_full_requests(t) is t


def test_json_sameness_keeps_types_and_key_order():
    assert same_json({"a": 1, "b": [1.5, None]}, {"a": 1, "b": [1.5, None]})
    assert not same_json(1, 1.0) and not same_json(1, True) and not same_json(0.0, -0.0)
    assert not same_json({"a": 1, "b": 2}, {"b": 2, "a": 1})
    request = {"messages": [{"role": "user", "content": 1}]}
    assert compact_request(request, {"messages": [{"role": "user", "content": True}]}) == (
        request,
        0,
    )


def test_a_request_that_cannot_be_rebuilt_says_why():
    first = step(1, {"messages": [{"role": "user", "content": "a"}]})
    dangling = step(2, {"messages": []}).model_copy()
    dangling.llm = dangling.llm.model_copy(update={"prefix_step": 7, "prefix_messages": 1})
    with pytest.raises(ConversationError, match="step 2's request refers to step 7"):
        full_steps([first, dangling])
    too_long = dangling.llm.model_copy(update={"prefix_step": 1, "prefix_messages": 5})
    with pytest.raises(ConversationError, match="prefix of 5 messages"):
        full_steps([first, dangling.model_copy(update={"llm": too_long})])


# --------------------------------------------------------------------------- the record limit

LIMIT = SMALL  # the smallest limit the encoding measures against


def conversation_steps(n: int, observation: int) -> list[Step]:
    history: list[dict] = [{"role": "system", "content": "s"}]
    out = []
    for i in range(1, n + 1):
        out.append(step(i, {"messages": list(history)}, observation="o" * observation))
        history = [*history, {"role": "tool", "content": f"{i}" * 100}]
    return out


def test_an_oversized_observation_becomes_a_file_of_the_step():
    encoding = StepEncoding(limit=LIMIT)
    big = "é" * LIMIT  # two UTF-8 bytes a character: well over the limit
    s, blobs = encoding.for_wire(step(1, {"messages": []}, observation=big))
    (artifact,) = s.artifacts
    assert artifact.name == "adp-record/observation.txt" and artifact.kept
    assert blobs[artifact.sha256].decode() == big
    assert artifact.sha256 == hashlib.sha256(big.encode()).hexdigest()
    assert s.observation.startswith("é" * 4000) and "kept whole in the step's file" in s.observation
    assert len(orjson.dumps(s.model_dump(mode="json"))) < LIMIT
    assert s.llm is not None  # the exchange stays, the conversation goes on


def test_a_step_too_big_for_its_texts_alone_is_kept_whole():
    steps = conversation_steps(3, 10)
    huge = steps[1].llm.model_copy(update={"response": {"text": "r" * (2 * LIMIT)}})
    steps[1] = steps[1].model_copy(update={"llm": huge})
    encoding = StepEncoding(limit=LIMIT)
    first, _ = encoding.for_wire(steps[0])
    second, blobs = encoding.for_wire(steps[1])
    third, _ = encoding.for_wire(steps[2])
    assert (
        second.llm is None and "kept whole in its file adp-record/step.json" in second.observation
    )
    (data,) = blobs.values()
    kept = Step.model_validate(orjson.loads(data))
    assert kept.llm.response == huge.response and kept.llm.prefix_step == 1  # still rebuildable
    # the next call cannot refer to a request the record lacks: it is stored whole
    assert third.llm.prefix_step is None and third.llm.request == steps[2].llm.request
    assert full_steps([first, second, third])[2].llm.request == steps[2].llm.request
