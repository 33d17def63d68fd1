"""adp.schemas.codec: Avro single-object encoding round-trips every record exactly, and anything
that is
not such a record is refused with DecodeError (never another exception, never a wrong record)."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adp.schemas import codec
from adp.schemas.codec import DecodeError, decode, encode
from adp.schemas.contracts import (
    ErrorType,
    EventType,
    Finish,
    LlmExchange,
    Step,
    StepEvent,
    Task,
    TaskType,
    Trajectory,
    TrajectoryMetadata,
    Verdict,
)

# --- examples ------------------------------------------------------------------------------------

TASK = Task(
    task_id="t-1",
    task_type="web",
    description="find the title ✓",
    expected_tools=["browser"],
    max_steps=4,
    timeout=12.5,
    priority=9,
    constraints={"start_url": "http://127.0.0.1:8000/", "depth": [1, {"a": None}]},
    metadata={"owner": "ü", "n": 3, "f": 1.5, "ok": True},
    verify={"type": "answer", "match": "contains", "expected": "Example"},
    samples=4,
    sample_index=2,
    temperature=0.7,
    seed=44,
)
LLM = LlmExchange(
    provider="stub",
    model="m",
    request={"messages": [{"role": "user", "content": "hi"}], "temperature": 0.0},
    response={"choices": []},
    prompt_tokens=10,
    completion_tokens=3,
    latency=0.25,
    cached=True,
    cost_usd=1.5e-6,
)
STEP = Step(
    step_id=1,
    action_type="python",
    action_params={"code": "print(1)"},
    observation="1\n",
    thinking="run it",
    success=True,
    timestamp=1.7e9,
    duration=0.1,
    llm=LLM,
)
VERDICT = Verdict(
    verifier="judge",
    passed=False,
    score=0.25,
    details="wrong year",
    spec={"type": "judge", "rubric": "the year is 1969"},
    llm=LLM,
    verified_at=1.7e9,
    duration=0.5,
)
FINISH = Finish(
    success=False,
    final_result="",
    error="took too long",
    error_type="timeout",
    total_duration=30.0,
    step_count=1,
    verdict=VERDICT,
)


def event(kind: str, **kw) -> StepEvent:
    base = dict(
        event_type=kind,
        task_id="t-1",
        attempt_id="a-1",
        task_type="web",
        runtime_id="r-1",
        timestamp=1.7e9,
    )
    return StepEvent(**base, **kw)


EVENTS = {
    "started": event("started", task=TASK),
    "step": event("step", step=STEP),
    "finished": event("finished", finish=FINISH),
}
TRAJECTORY = Trajectory(
    task_id="t-1",
    task_type="web",
    description="find the title",
    sample_index=3,
    success=False,
    claimed_success=True,
    verification=VERDICT,
    steps=[STEP, STEP.model_copy(update={"step_id": 2, "llm": None, "thinking": None})],
    final_result="done",
    total_duration=3.0,
    metadata=TrajectoryMetadata(
        runtime_id="r-1",
        attempt_id="a-1",
        started_at=1.0,
        finished_at=4.0,
        llm_calls=1,
        prompt_tokens=10,
        completion_tokens=3,
        cached_llm_calls=1,
        task={"max_steps": 4, "constraints": {}},
        cost_usd=0.25,
    ),
)


@pytest.mark.parametrize(
    "record",
    [TASK, Task(task_id="m", task_type="code", description=""), *EVENTS.values(), TRAJECTORY],
    ids=["task", "task-defaults", *EVENTS, "trajectory"],
)
def test_round_trip(record):
    data = encode(record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.schema_fingerprint("adp." + type(record).__name__)
    back = decode(data)
    assert type(back) is type(record) and back == record
    assert decode(data, expect=type(record)) == record


def test_a_decoded_trajectory_keeps_exactly_the_json_a_dump_gives():
    """encode and render use as_json(): for a decoded trajectory that is the data it was
    validated from, which must be what model_dump(mode="json") gives, key order included."""
    back = decode(encode(TRAJECTORY))
    assert back._json is not None
    assert json.dumps(back.as_json()) == json.dumps(back.model_dump(mode="json"))
    # a copy or a changed field no longer claims it
    assert back.model_copy(update={"task_id": "other"}).as_json()["task_id"] == "other"
    back.task_id = "changed"
    assert back._json is None and back.as_json()["task_id"] == "changed"
    assert encode(back) == encode(type(back).model_validate(back.model_dump()))


def test_each_event_type_is_covered():
    assert sorted(EVENTS) == sorted(e.value for e in EventType)


def test_unknown_fingerprint_is_named():
    data = encode(TASK)
    forged = data[:2] + bytes.fromhex("0123456789abcdef") + data[10:]
    with pytest.raises(DecodeError, match="unknown schema fingerprint 0123456789abcdef"):
        decode(forged)


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b'{"task_id": "x"}', b"\x00" * 40, b"\xc3\x02" + b"\x00" * 20]
)
def test_no_magic_header(data):
    with pytest.raises(DecodeError, match="not Avro single-object encoded"):
        decode(data)


def test_not_bytes():
    with pytest.raises(DecodeError, match="expected bytes, got str"):
        decode("hello")  # type: ignore[arg-type]


def test_truncated_body_at_every_length():
    data = encode(EVENTS["step"])
    for cut in range(codec.HEADER_LEN, len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


def test_trailing_bytes():
    with pytest.raises(DecodeError, match=r"3 trailing bytes after adp.Task"):
        decode(encode(TASK) + b"abc")


def test_wrong_expected_type():
    with pytest.raises(DecodeError, match=r"got a adp.Task record, expected adp.StepEvent"):
        decode(encode(TASK), expect=StepEvent)


def test_memoryview_and_bytearray_are_accepted():
    data = encode(TASK)
    assert decode(bytearray(data)) == TASK == decode(memoryview(data))


# --- properties ----------------------------------------------------------------------------------

# Text that can be UTF-8 encoded: any code point except lone surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
task_ids = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=30,
).filter(lambda s: not s.startswith("."))
finite = st.floats(allow_nan=False, allow_infinity=False)
doubles = st.floats(allow_nan=False)  # Avro doubles carry ±inf too
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
json_objects = st.dictionaries(text, json_values, max_size=4)
int32 = st.integers(-(2**31), 2**31 - 1)

tasks = st.builds(
    Task,
    task_id=task_ids,
    task_type=st.sampled_from(TaskType),
    description=text,
    expected_tools=st.lists(text, max_size=4),
    max_steps=st.integers(1, 1000),
    timeout=st.floats(min_value=0, max_value=86400, exclude_min=True),
    priority=st.integers(1, 10),
    constraints=json_objects,
    metadata=json_objects,
    verify=json_values,
    samples=st.integers(1, 1000),
    sample_index=st.integers(0, 999),
    temperature=st.none() | st.floats(0, 2),
    seed=st.none() | st.integers(-(2**63), 2**63 - 1),
)
llms = st.builds(
    LlmExchange,
    provider=text,
    model=text,
    request=json_values,
    response=json_values,
    prompt_tokens=int32,
    completion_tokens=int32,
    latency=doubles,
    cached=st.booleans(),
    cost_usd=st.none() | doubles,
)
verdicts = st.builds(
    Verdict,
    verifier=text,
    passed=st.none() | st.booleans(),
    score=st.none() | doubles,
    details=text,
    error=st.none() | text,
    spec=json_values,
    llm=st.none() | llms,
    verified_at=doubles,
    duration=doubles,
)
steps = st.builds(
    Step,
    step_id=st.integers(1, 2**31 - 1),
    action_type=text,
    action_params=json_values,
    observation=text,
    thinking=st.none() | text,
    success=st.booleans(),
    error=st.none() | text,
    timestamp=doubles,
    duration=doubles,
    llm=st.none() | llms,
)
finishes = st.builds(
    Finish,
    success=st.booleans(),
    final_result=text,
    error=st.none() | text,
    error_type=st.none() | st.sampled_from(ErrorType),
    total_duration=doubles,
    step_count=st.integers(0, 2**31 - 1),
    verdict=st.none() | verdicts,
)
events = st.builds(
    StepEvent,
    event_type=st.sampled_from(EventType),
    task_id=text,
    attempt_id=text,
    task_type=st.sampled_from(TaskType),
    runtime_id=text,
    timestamp=doubles,
    task=st.none() | tasks,
    step=st.none() | steps,
    finish=st.none() | finishes,
    sample_index=st.integers(0, 999),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_any_task_round_trips(task):
    assert decode(encode(task), expect=Task) == task


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_any_step_event_round_trips(ev):
    back = decode(encode(ev), expect=StepEvent)
    assert back == ev
    assert back.model_dump(mode="json") == ev.model_dump(mode="json")


def _only_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        return
    except Exception as exc:
        pytest.fail(f"decode raised {type(exc).__name__}: {exc} for {data!r}")
    # Decoding without error is allowed only if the bytes are a real record's encoding.


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_decode_error(data):
    _only_decode_error(data)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(codec.SCHEMA_FILES)), st.binary(max_size=300))
def test_random_body_behind_a_valid_header_only_raises_decode_error(name, body):
    _only_decode_error(codec.MAGIC + codec.schema_fingerprint(name) + body)


@settings(max_examples=300, deadline=None)
@given(events, st.data())
def test_corrupted_real_records_only_raise_decode_error(ev, data):
    raw = bytearray(encode(ev))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(codec.HEADER_LEN, len(raw) - 1)) if len(raw) > 10 else 0
        raw[i] = data.draw(st.integers(0, 255))
    _only_decode_error(bytes(raw))


def test_body_that_parses_but_breaks_model_rules_is_a_decode_error():
    # An Avro-valid Task whose task_id is empty: the schema allows it, the model does not.
    body = (
        b"\x00"
        + b"\x02"
        + b"\x00"
        + b"\x00"
        + b"\x14"
        + struct.pack("<d", 300.0)
        + b"\x0a"
        + b"\x04{}"
        + b"\x04{}"
    )
    _only_decode_error(codec.MAGIC + codec.schema_fingerprint("adp.Task") + body)


avro_tasks = st.fixed_dictionaries(
    {
        "task_id": st.text(max_size=5),
        "task_type": st.sampled_from([t.value for t in TaskType]),
        "description": text,
        "expected_tools": st.lists(text, max_size=2),
        "max_steps": int32,
        "timeout": st.floats(),
        "priority": int32,
        "constraints": json_values,
        "metadata": json_values,
        "verify": json_values,
        "samples": int32,
        "sample_index": int32,
        "temperature": st.none() | st.floats(),
        "seed": st.none() | st.integers(-(2**63), 2**63 - 1),
    }
)


@settings(max_examples=300, deadline=None)
@given(avro_tasks)
def test_avro_valid_but_model_invalid_bodies_only_raise_decode_error(obj):
    # Bytes another writer could send with our schema: Avro-valid, yet free to break the
    # model's rules (empty or unsafe task_id, max_steps 0, NaN timeout, constraints a list).
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, codec.current_schema("adp.Task"), obj)
    _only_decode_error(codec.MAGIC + codec.schema_fingerprint("adp.Task") + buf.getvalue())


# --- records of an older schema version resolve to the current one -------------------------------


def test_a_record_written_with_an_older_version_decodes_with_defaults(tmp_path, monkeypatch):
    """An older version lacked fields the current schema has (with defaults): its records are
    read with their own writer schema and resolved to the current one."""
    import json
    import shutil

    old = tmp_path / "history" / "v1"
    old.mkdir(parents=True)
    for file in codec.SCHEMA_FILES.values():
        shutil.copy(codec.SCHEMA_DIR / file, old / file)
    step_event = json.loads((old / "StepEvent.avsc").read_text())
    step = next(f for f in step_event["fields"] if f["name"] == "step")["type"][1]
    llm = next(f for f in step["fields"] if f["name"] == "llm")["type"][1]
    llm["fields"] = [f for f in llm["fields"] if f["name"] not in ("latency", "cached")]
    (old / "StepEvent.avsc").write_text(json.dumps(step_event))

    registry = codec.build_registry(codec.SCHEMA_DIR, tmp_path / "history")
    monkeypatch.setattr(codec, "_registry", lambda: registry)
    writer = codec.load_version(old, "v1")["adp.StepEvent"]
    fp = codec.crc64_fingerprint(writer.canonical)
    assert registry.writers[fp].version == "v1" and fp != codec.schema_fingerprint("adp.StepEvent")

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer.parsed, EVENTS["step"].model_dump(mode="json"))
    back = decode(codec.MAGIC + fp + buf.getvalue(), expect=StepEvent)
    assert back.step.llm.cached is False and back.step.llm.latency == 0.0
    assert (
        back.model_copy(
            update={
                "step": back.step.model_copy(
                    update={
                        "llm": back.step.llm.model_copy(update={"cached": True, "latency": 0.25})
                    }
                )
            }
        )
        == EVENTS["step"]
    )
    # and a truncated old record is still only a DecodeError naming the version
    with pytest.raises(DecodeError, match=r"corrupt adp.StepEvent body \(v1 schema\)"):
        decode(codec.MAGIC + fp + buf.getvalue()[:-3])


def test_render_is_exactly_the_indented_json_of_the_trajectory():
    """render() takes orjson's fast path; its bytes must stay those of json.dumps(indent=2,
    ensure_ascii=False) for every document, including the ones orjson writes differently."""
    import json

    from adp.connectors.sinks.base import render
    from adp.schemas.contracts import Trajectory
    from tests.test_assembly import assemble, attempt_events

    [t], _ = assemble(attempt_events("render-1", n_steps=2))
    odd = [1.5e-07, 1e-300, 2**70, "é ✓ \u2028 \x7f", 1e16, -0.0]
    for value in [None, *odd]:
        steps = [
            s.model_copy(update={"action_params": {"v": value, "list": [value, {}]}})
            for s in t.steps
        ]
        doc = t.model_copy(update={"steps": steps})
        want = (
            json.dumps(doc.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        ).encode("utf-8")
        assert render(doc) == want, value
        assert isinstance(doc, Trajectory)


def test_json_fields_keep_what_orjson_refuses():
    """The "json" logical type is written with orjson, and with json for what orjson refuses:
    integers beyond 64 bits, non-string keys, lone surrogates; it reads NaN of old records."""
    from adp.schemas.codec import _json_dumps, _json_loads

    for value in [{"big": 2**70, "neg": -(2**63) - 1}, {"s": "\ud800 x"}, [1.5, "é✓", None]]:
        assert _json_loads(_json_dumps(value)) == value
    assert _json_loads(_json_dumps({1: "a"})) == {"1": "a"}
    assert str(_json_loads("[NaN]")[0]) == "nan"  # written by json before orjson was used
    assert _json_loads('{"n": 12345678901234567890123}')["n"] == 12345678901234567890123
    assert _json_loads('"a 1234567890123456789012 in a string"').startswith("a 123")
