"""adp.streams.aggregator.assembly: step events in, trajectories and counters out (pure, no
broker)."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from adp.connectors.sinks.base import render
from adp.schemas.contracts import Artifact, ArtifactLocation, StepEvent, Trajectory, Verdict
from adp.streams.aggregator.assembly import InvalidEvent, TrajectoryAssembler, assemble

T0 = 1_700_000_000.0


def attempt_events(
    task_id: str,
    n_steps: int = 2,
    attempt_id: str | None = None,
    t0: float = T0,
    runtime_id: str = "code-rt-1",
    success: bool = True,
    task_type: str = "code",
    finish: bool = True,
    cached_every: int = 0,
) -> list[StepEvent]:
    """The events one attempt emits: started, step 1..n, finished (one second apart)."""
    aid = attempt_id or str(uuid.uuid4())
    base = {"task_id": task_id, "attempt_id": aid, "task_type": task_type, "runtime_id": runtime_id}
    task = {
        "task_id": task_id,
        "task_type": task_type,
        "description": f"do {task_id} ✓",
        "expected_tools": ["python"],
        "max_steps": 5,
        "timeout": 60.0,
        "priority": 7,
        "constraints": {"k": [1, 2]},
        "metadata": {"origin": "test"},
    }
    events = [
        StepEvent.model_validate({**base, "event_type": "started", "timestamp": t0, "task": task})
    ]
    for i in range(1, n_steps + 1):
        step = {
            "step_id": i,
            "action_type": "code_execution" if i < n_steps else "final_answer",
            "action_params": {"code": f"print({i})"},
            "observation": f"{i}\n",
            "thinking": f"step {i}",
            "success": True,
            "timestamp": t0 + i,
            "duration": 0.5,
            "llm": {
                "provider": "stub",
                "model": "m",
                "request": {"messages": [i]},
                "response": {"choices": [i]},
                "prompt_tokens": 10 * i,
                "completion_tokens": i,
                "latency": 0.1,
                "cached": bool(cached_every and i % cached_every == 0),
            },
        }
        events.append(
            StepEvent.model_validate(
                {**base, "event_type": "step", "timestamp": t0 + i, "step": step}
            )
        )
    if finish:
        events.append(
            StepEvent.model_validate(
                {
                    **base,
                    "event_type": "finished",
                    "timestamp": t0 + n_steps + 1,
                    "finish": {
                        "success": success,
                        "final_result": f"result {task_id}",
                        "error": None if success else "boom",
                        "error_type": None if success else "runtime_error",
                        "total_duration": n_steps + 1.0,
                        "step_count": n_steps,
                    },
                }
            )
        )
    return events


def test_happy_path_builds_the_trajectory():
    events = attempt_events("t1", n_steps=3, attempt_id="a1", cached_every=2)
    out, counters = assemble(events)
    assert len(out) == 1
    t = out[0]
    assert isinstance(t, Trajectory)
    assert (t.task_id, t.task_type, t.description) == ("t1", "code", "do t1 ✓")
    assert t.success is True and t.final_result == "result t1" and t.total_duration == 4.0
    assert [s.step_id for s in t.steps] == [1, 2, 3]
    assert [s.action_type for s in t.steps][-1] == "final_answer"
    m = t.metadata
    assert (m.runtime_id, m.attempt_id, m.error, m.error_type) == ("code-rt-1", "a1", None, None)
    assert (m.started_at, m.finished_at) == (T0, T0 + 4)
    assert m.task == {
        "max_steps": 5,
        "timeout": 60.0,
        "priority": 7,
        "expected_tools": ["python"],
        "constraints": {"k": [1, 2]},
        "metadata": {"origin": "test"},
        "verify": None,
        "samples": 1,
        "temperature": None,
        "seed": None,
    }
    assert t.key == "t1" and t.sample_index == 0
    # no verifier named: success is the agent's claim, and the trajectory says so
    assert t.claimed_success is True and t.verdict_status == "unverified"
    assert m.cost_usd is None  # no call was priced
    assert counters["completed"] == 1 and counters["events"] == 5
    assert counters["duplicates_dropped"] == counters["attempts_superseded"] == 0


def test_token_sums_and_failure_fields():
    events = attempt_events("t2", n_steps=4, success=False, cached_every=2)
    # a step without an LLM exchange counts for nothing
    events[2] = events[2].model_copy(
        update={"step": events[2].step.model_copy(update={"llm": None})}
    )
    (t,), _ = assemble(events)
    m = t.metadata
    assert m.llm_calls == 3
    assert m.prompt_tokens == 10 * (1 + 3 + 4) and m.completion_tokens == 1 + 3 + 4
    assert m.cached_llm_calls == 1  # steps 2 and 4 were cached, but 2 has no exchange
    assert t.success is False and m.error == "boom" and m.error_type == "runtime_error"


def test_state_is_dropped_after_completion_and_memory_follows_in_flight_tasks():
    a = TrajectoryAssembler()
    events = attempt_events("t3", n_steps=2, attempt_id="a1")
    for e in events[:-1]:
        assert a.feed(e) == []
    assert a.in_flight == 1
    assert len(a.feed(events[-1])) == 1
    assert a.in_flight == 0
    # only the done record (and the scope's watermark) remain: no step entries
    assert a.get_state("t3") == {"scope": 0, "done": "a1", "at": events[-1].timestamp}
    assert not [k for k in a.store if k.startswith("t3\x00")]


def task_headers(a: TrajectoryAssembler) -> dict[str, dict]:
    return {k: v for k, v in a.store.items() if "\x00" not in k}


def test_a_done_record_is_forgotten_after_forget_done_after_in_event_time():
    a = TrajectoryAssembler(expire_after=60, forget_done_after=3600)
    first = attempt_events("t-old", n_steps=2, attempt_id="a1")
    assert len([t for e in first for t in a.feed(e)]) == 1
    # within the hour (event time) the same task again is late, however long it runs
    again = attempt_events("t-old", n_steps=2, attempt_id="a2", t0=T0 + 1800)
    assert [t for e in again for t in a.feed(e)] == []
    assert a.late_events_dropped == 4 and a.done_forgotten == 0
    # another task moves the watermark past completion + 1 hour: the record goes
    later = attempt_events("t-new", n_steps=1, t0=T0 + 3 + 3600 + 61)
    assert len([t for e in later for t in a.feed(e)]) == 1
    assert "t-old" not in a.store and a.done_forgotten == 1
    # and a copy of the task produced now runs and gives a trajectory again
    rerun = attempt_events("t-old", n_steps=2, attempt_id="a3", t0=T0 + 3 + 3600 + 70)
    (t,) = [t for e in rerun for t in a.feed(e)]
    assert t.metadata.attempt_id == "a3"


def test_the_state_follows_tasks_in_flight_and_recently_finished_not_all_finished():
    a = TrajectoryAssembler(expire_after=30, forget_done_after=100)
    peak = 0
    for i in range(400):  # a task every 2 s of event time, each 4 s long
        for e in attempt_events(f"t{i}", n_steps=2, attempt_id=f"a{i}", t0=T0 + 2 * i):
            a.feed(e)
        peak = max(peak, len(task_headers(a)))
    assert a.completed == 400 and a.done_forgotten > 300
    # done records of the last 100 s (+ one sweep) and the few tasks in flight: ~60, not 400
    assert peak <= 100 / 2 + a.sweep_every / 2 + 5
    assert not [k for k in a.store if "\x00" in k and not k.startswith("\x00wm:")]


def test_done_records_are_kept_forever_when_asked_and_when_written_without_a_time():
    keep = TrajectoryAssembler(expire_after=30, forget_done_after=None)
    for i in range(50):
        for e in attempt_events(f"t{i}", n_steps=1, attempt_id=f"a{i}", t0=T0 + 100 * i):
            keep.feed(e)
    assert len(task_headers(keep)) == 50 and keep.done_forgotten == 0
    # a store restored from an older aggregator: its done records carry no completion time
    store = {"t-before": {"scope": 0, "done": "x"}, "t-timed": {"scope": 0, "done": "y", "at": T0}}
    restored = TrajectoryAssembler(store=store, expire_after=30, forget_done_after=100)
    for e in attempt_events("t-next", n_steps=1, t0=T0 + 500):
        restored.feed(e)
    assert "t-before" in store and "t-timed" not in store and restored.done_forgotten == 1
    with pytest.raises(ValueError, match="forget_done_after"):
        TrajectoryAssembler(forget_done_after=0)


def test_duplicates_are_ignored_and_counted():
    events = attempt_events("t4", n_steps=3)
    dup = events + events[1:3] + [events[0], events[-1]]
    order = [events[0], events[1], events[1], events[2], events[0], events[3], events[2], events[4]]
    out, counters = assemble(order)
    assert len(out) == 1 and [s.step_id for s in out[0].steps] == [1, 2, 3]
    assert counters["duplicates_dropped"] == 3
    # the same events again after completion are late, not a second trajectory
    out2, counters2 = assemble(dup)
    assert len(out2) == 1 and counters2["late_events_dropped"] == 4


def test_two_attempts_first_complete_wins():
    first = attempt_events("t5", n_steps=2, attempt_id="A", runtime_id="rt-a")
    second = attempt_events("t5", n_steps=3, attempt_id="B", runtime_id="rt-b", t0=T0 + 0.5)
    # interleaved; B's finished event comes before A's
    order = [
        first[0],
        second[0],
        first[1],
        second[1],
        second[2],
        second[3],
        second[4],
        first[2],
        first[3],
    ]
    out, counters = assemble(order)
    assert len(out) == 1 and out[0].metadata.attempt_id == "B"
    assert out[0].metadata.runtime_id == "rt-b" and len(out[0].steps) == 3
    assert counters["attempts_superseded"] == 1
    assert counters["late_events_dropped"] == 2  # A's step 2 and finished


def test_partial_attempt_then_a_complete_one():
    dead = attempt_events("t6", n_steps=3, attempt_id="dead", finish=False)[:3]  # started, 1, 2
    redo = attempt_events("t6", n_steps=2, attempt_id="redo", t0=T0 + 100)
    out, counters = assemble(dead + redo)
    assert len(out) == 1 and out[0].metadata.attempt_id == "redo"
    assert [s.observation for s in out[0].steps] == ["1\n", "2\n"]
    assert counters["attempts_superseded"] == 1


def test_incomplete_steps_never_complete():
    events = attempt_events("t7", n_steps=3)
    gap = [e for e in events if not (e.step and e.step.step_id == 2)]
    out, _ = assemble(gap)
    assert out == []
    # a finish claiming fewer steps than were sent is not complete either
    extra = attempt_events("t7b", n_steps=3)
    extra[-1] = extra[-1].model_copy(
        update={"finish": extra[-1].finish.model_copy(update={"step_count": 2})}
    )
    assert assemble(extra)[0] == []


def test_never_finishing_attempt_expires_in_event_time():
    a = TrajectoryAssembler(expire_after=60)
    for e in attempt_events("stuck", n_steps=2, attempt_id="S", finish=False):
        a.feed(e)
    assert a.in_flight == 1
    # other traffic in the same partition moves event time on; no wall clock is involved
    for e in attempt_events("other", n_steps=1, t0=T0 + 30):
        a.feed(e)
    assert a.in_flight == 1 and a.attempts_expired == 0
    out = []
    for e in attempt_events("later", n_steps=1, t0=T0 + 200):
        out += a.feed(e)
    assert [t.task_id for t in out] == ["later"]
    assert a.attempts_expired == 1 and a.in_flight == 0
    assert not [k for k in a.store if k.startswith("stuck")]
    # the expired attempt's stray finish cannot complete it
    tail = attempt_events("stuck", n_steps=2, attempt_id="S", t0=T0 + 201)[-1:]
    assert a.feed(tail[0]) == []
    # explicit expiry with a caller's `now`
    assert a.expire(T0 + 10_000) == 1 and a.in_flight == 0


def test_expiry_is_checked_when_the_task_itself_gets_an_event():
    a = TrajectoryAssembler(expire_after=60, sweep_every=10_000)  # sweeps effectively off
    events = attempt_events("slow", n_steps=2, attempt_id="S")
    a.feed(events[0])
    a.feed(events[1].model_copy(update={"timestamp": T0 + 500}))  # 500 s of silence
    assert a.attempts_expired == 1
    # what survived is a fresh partial attempt holding only step 1: it cannot complete
    assert all(a.feed(e) == [] for e in events[2:])


def test_events_after_completion_are_dropped():
    events = attempt_events("t8", n_steps=1, attempt_id="A")
    late_attempt = attempt_events("t8", n_steps=1, attempt_id="B", t0=T0 + 10)
    out, counters = assemble(events + late_attempt + events)
    assert len(out) == 1 and out[0].metadata.attempt_id == "A"
    assert counters["late_events_dropped"] == len(late_attempt) + len(events)


def test_invalid_events_are_rejected():
    a = TrajectoryAssembler()
    started = attempt_events("t9")[0]
    with pytest.raises(InvalidEvent):
        a.feed(started.model_copy(update={"task": None}))
    with pytest.raises(InvalidEvent):
        a.feed(started.model_copy(update={"event_type": "step"}))
    with pytest.raises(InvalidEvent):
        a.feed(started.model_copy(update={"task_id": "other"}))


def test_state_is_plain_json():
    a = TrajectoryAssembler()
    for e in attempt_events("t10", n_steps=2, finish=False):
        a.feed(e)
    for key, value in a.store.items():
        assert json.loads(json.dumps(value)) == value, key
    # a new assembler over a JSON round trip of the store carries on where the first stopped
    b = TrajectoryAssembler(store=json.loads(json.dumps(dict(a.store))))
    out = b.feed(
        attempt_events("t10", n_steps=2, attempt_id=a.get_state("t10")["attempts"].popitem()[0])[-1]
    )
    assert len(out) == 1 and len(out[0].steps) == 2


def test_same_events_shuffled_duplicates_give_identical_bytes():
    rng = random.Random(7)
    tasks = [
        attempt_events(f"d{i}", n_steps=rng.randint(0, 5), attempt_id=f"a{i}", t0=T0 + i)
        for i in range(10)
    ]
    clean = [e for events in tasks for e in events]
    reference = {t.task_id: render(t) for t in assemble(clean)[0]}
    assert len(reference) == 10
    for seed in range(5):
        rng = random.Random(seed)
        # keep each attempt's own order, interleave tasks, sprinkle duplicates
        noisy: list[StepEvent] = []
        queues = [list(events) for events in tasks]
        while any(queues):
            q = rng.choice([q for q in queues if q])
            e = q.pop(0)
            noisy.append(e)
            if rng.random() < 0.3:
                noisy.append(e)
            if noisy and rng.random() < 0.2:
                noisy.append(rng.choice(noisy))
        got = {t.task_id: render(t) for t in assemble(noisy)[0]}
        assert got == reference


# ---- StagedStore: one per batch of events, applied after the batch's trajectories are out ----


def _feed_all(assembler: TrajectoryAssembler, events: list[StepEvent]) -> list[Trajectory]:
    out: list[Trajectory] = []
    for e in events:
        out.extend(assembler.feed(e))
    return out


def test_staged_store_writes_each_key_once_and_skips_what_lived_only_in_the_batch():
    from adp.streams.aggregator.staged_store import StagedStore

    table: dict = {}
    staged = StagedStore(table)
    assembler = TrajectoryAssembler(store=staged)
    whole = attempt_events("whole", n_steps=3)  # starts and completes within the batch
    half = attempt_events("half", n_steps=3)
    done = _feed_all(assembler, whole + half[:3])
    assert [t.task_id for t in done] == ["whole"] and table == {}, "nothing before apply()"
    calls: list[tuple] = []
    writes = staged.apply(
        lambda scope, k, v: (calls.append(("set", k)), table.__setitem__(k, v)),
        lambda scope, k: (calls.append(("del", k)), table.pop(k)),
    )
    # "whole": only its done record; its step entries were set and deleted inside the batch.
    # "half": two step entries and one header, however many events wrote the header.
    assert sorted(k for op, k in calls if "\x00wm" not in k) == sorted(
        [
            "whole",
            "half",
            "half\x00" + half[0].attempt_id + "\x001",
            "half\x00" + half[0].attempt_id + "\x002",
        ]
    )
    assert writes == len(calls) and all(op == "set" for op, _ in calls)
    assert table["whole"]["done"] == whole[0].attempt_id
    # the next batch completes "half": its entries are deleted from the table, header last
    calls.clear()
    done = _feed_all(assembler, half[3:])
    assert [t.task_id for t in done] == ["half"]
    staged.apply(
        lambda scope, k, v: (calls.append(("set", k)), table.__setitem__(k, v)),
        lambda scope, k: (calls.append(("del", k)), table.pop(k)),
    )
    assert [op for op, k in calls if "\x00wm" not in k] == ["set", "del", "del"]
    assert all("\x00" not in k for k in table if not k.startswith("\x00wm")), table


def test_every_prefix_of_an_applied_batch_is_a_consistent_state():
    """A kill -9 keeps any prefix of a batch's changelog writes: no prefix may leave a task
    header naming a step entry that is not there."""
    from adp.streams.aggregator.staged_store import StagedStore

    rng = random.Random(3)
    events = []
    for i in range(6):
        events += attempt_events(f"p{i}", n_steps=rng.randint(1, 4), t0=T0 + i)
    rng.shuffle(events)  # interleaved tasks; per-task order does not matter for this check
    events.sort(key=lambda e: (e.task_id, e.timestamp))
    table: dict = {}
    staged = StagedStore(table)
    assembler = TrajectoryAssembler(store=staged)
    for cut in range(0, len(events), 5):
        _feed_all(assembler, events[cut : cut + 5])
        log: list[tuple] = []
        before = dict(table)
        staged.apply(
            lambda s, k, v, log=log: log.append((k, v)),
            lambda s, k, log=log: log.append((k, None)),
        )
        state = dict(before)
        for k, v in [(None, None), *log]:
            if k is not None:
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            for tid, header in state.items():
                for aid, attempt in (header.get("attempts") or {}).items():
                    for step_id in attempt["steps"]:
                        assert f"{tid}\x00{aid}\x00{step_id}" in state, (tid, aid, step_id)
        table.clear()
        table.update(state)


# ---- samples, verdicts, costs -------------------------------------------------------------------


def sample_events(task_id: str, index: int, samples: int, **kw) -> list[StepEvent]:
    """One attempt of sample `index` of a task asked for `samples` times."""
    events = attempt_events(task_id, **kw)
    out = []
    for e in events:
        update = {"sample_index": index}
        if e.task is not None:
            update["task"] = e.task.model_copy(
                update={
                    "sample_index": index,
                    "samples": samples,
                    "temperature": 1.0,
                    "seed": 7 + index,
                }
            )
        out.append(e.model_copy(update=update))
    return out


def test_k_samples_of_a_task_give_k_trajectories():
    events = [e for i in range(4) for e in sample_events("t", i, 4, attempt_id=f"a{i}")]
    events.sort(key=lambda e: e.timestamp)  # interleaved; each sample's events stay in order
    out, counters = assemble(events)
    assert sorted(t.key for t in out) == ["t", "t/1", "t/2", "t/3"]
    assert {t.task_id for t in out} == {"t"} and counters["completed"] == 4
    for t in out:
        assert t.metadata.attempt_id == f"a{t.sample_index}"
        assert t.metadata.task["seed"] == 7 + t.sample_index
        assert t.metadata.task["samples"] == 4 and t.metadata.task["temperature"] == 1.0
    # a redelivered sample is one trajectory still: its key is done
    again, counters = assemble(events + sample_events("t", 2, 4, attempt_id="late"))
    assert len(again) == 4 and counters["late_events_dropped"] == 4


def test_a_started_event_whose_task_is_another_sample_is_invalid():
    events = sample_events("t", 1, 2)
    bad = events[0].model_copy(update={"sample_index": 0})
    with pytest.raises(InvalidEvent, match="sample 0 carries sample 1"):
        TrajectoryAssembler().feed(bad)


def _with_verdict(events: list[StepEvent], claimed: bool, **verdict) -> list[StepEvent]:
    finish = events[-1].finish.model_copy(
        update={"success": claimed, "verdict": Verdict(**verdict)}
    )
    return [*events[:-1], events[-1].model_copy(update={"finish": finish})]


@pytest.mark.parametrize(
    "claimed, verdict, success, status",
    [
        (True, {"verifier": "answer", "passed": True, "score": 1.0}, True, "passed"),
        (True, {"verifier": "answer", "passed": False, "score": 0.0}, False, "failed"),
        (False, {"verifier": "answer", "passed": True}, True, "passed"),
        # a verifier that could not run decides nothing: no pass by default
        (True, {"verifier": "judge", "passed": None, "error": "judge down"}, False, "error"),
    ],
)
def test_success_is_the_verdict_where_there_is_a_verifier(claimed, verdict, success, status):
    (t,), _ = assemble(_with_verdict(attempt_events("v", n_steps=1), claimed, **verdict))
    assert (t.success, t.claimed_success, t.verdict_status) == (success, claimed, status)
    assert t.verification.verifier == verdict["verifier"]


def test_cost_sums_the_priced_calls():
    events = attempt_events("c", n_steps=3)
    for e, cost in zip(events[1:4], (0.5, None, 0.25)):
        e.step.llm.cost_usd = cost
    (t,), _ = assemble(events)
    assert t.metadata.cost_usd == 0.75


def test_samples_have_file_names_of_their_own():
    from adp.connectors.sinks.base import artifact_name, is_artifact_name, object_name
    from adp.schemas.contracts import Artifact

    events = [e for i in range(2) for e in sample_events("plot", i, 2, attempt_id=f"a{i}")]
    first, second = sorted(assemble(events)[0], key=lambda t: t.sample_index)
    png = Artifact(name="out/hist.png", size=3, media_type="image/png", sha256="0" * 64, kept=True)
    assert (object_name(first), object_name(second)) == ("plot.json", "plot/1.json")
    names = [artifact_name(first, 2, png), artifact_name(second, 2, png)]
    assert names == ["plot/step-2/out/hist.png", "plot/1/step-2/out/hist.png"]
    assert all(is_artifact_name(n) for n in names)
    assert not any(
        is_artifact_name(n) for n in ("plot.json", "plot/1.json", "step-2.json", "step-2/1.json")
    )


def test_feeding_the_decoded_record_gives_the_same_state_and_trajectories():
    """The aggregator and replay pass the record as plain data (codec.decode_record) so the
    assembler keeps its parts instead of dumping them from the model: same state, same bytes."""
    from adp.schemas import codec

    events = [e for i in range(3) for e in attempt_events(f"raw-{i}", n_steps=3, cached_every=2)]
    events += attempt_events("raw-open", n_steps=2, finish=False)
    plain, fast = TrajectoryAssembler(), TrajectoryAssembler()
    out_plain, out_fast = [], []
    for e in events:
        out_plain += plain.feed(e)
        event, raw = codec.decode_record(codec.encode(e), expect=StepEvent)
        out_fast += fast.feed(event, raw=raw)
    assert [render(t) for t in out_fast] == [render(t) for t in out_plain] and len(out_fast) == 3
    assert json.dumps(dict(fast.store), sort_keys=True) == json.dumps(
        dict(plain.store), sort_keys=True
    )


def test_render_matches_json_for_floats_with_negative_exponents():
    """orjson writes 1e-7 where json writes 1e-07: render falls back to json for those
    documents (and only those) so every file has json.dumps' bytes."""
    events = attempt_events("tiny-cost", n_steps=1)
    t = assemble(events)[0][0]
    doc_plain = json.loads(render(t))
    tiny = t.model_copy(update={"total_duration": 2.5e-7, "final_result": "pre-1e-x 3e-"})
    out = render(tiny)
    assert (
        b"2.5e-07" in out
        and out.decode()
        == json.dumps(tiny.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    )
    assert doc_plain["task_id"] == "tiny-cost"
    text_only = t.model_copy(update={"final_result": "e-1 and re-2 are not numbers"})
    assert (
        render(text_only).decode()
        == json.dumps(text_only.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    )


def test_an_assembled_trajectory_keeps_exactly_the_json_a_dump_gives():
    """The aggregator encodes and renders a trajectory from the document it was built from
    (as_json); it must be what model_dump(mode="json") gives, key order included, for
    trajectories assembled from decoded events (the aggregator's path) with a verdict,
    artifacts, an error, and from validated events (no raw parts)."""
    from adp.schemas import codec

    events = attempt_events("t-j", n_steps=3, attempt_id="a1", success=False)
    events[2] = events[2].model_copy(
        update={
            "step": events[2].step.model_copy(
                update={
                    "artifacts": [
                        Artifact(
                            name="plot.png",
                            size=3,
                            media_type="image/png",
                            sha256="ab" * 32,
                            kept=True,
                            note=None,
                            location=ArtifactLocation(
                                topic="adp.artifacts", partition=1, offsets=[4, 5]
                            ),
                        )
                    ]
                }
            )
        }
    )
    verdict = Verdict(
        verifier="answer",
        passed=True,
        score=1.0,
        details="ok",
        spec={"expected": "42"},
        verified_at=T0,
        duration=0.25,
    )
    events[-1] = events[-1].model_copy(
        update={"finish": events[-1].finish.model_copy(update={"verdict": verdict})}
    )
    decoded = [codec.decode_record(codec.encode(e)) for e in events]
    assembler = TrajectoryAssembler()
    built = [t for e, raw in decoded for t in assembler.feed(e, raw=raw)]
    built += assemble(attempt_events("t-k", n_steps=2))[0]  # parts dumped from the models
    # and from the step events schema v1 wrote (resolved to today's schema on decode)
    v1 = json.loads((Path(__file__).parent / "data" / "schema_v1_records.json").read_text())
    v1_events = [codec.decode_record(bytes.fromhex(r["value"])) for r in v1["records"][1:5]]
    v1_assembler = TrajectoryAssembler()
    built += [t for e, raw in v1_events for t in v1_assembler.feed(e, raw=raw)]
    assert len(built) == 3 and built[0].verification.passed is True and built[0].success
    for t in built:
        assert t._json is not None
        assert json.dumps(t.as_json()) == json.dumps(t.model_dump(mode="json"))
        fresh = Trajectory.model_validate(t.model_dump())  # knows no document
        assert codec.encode(t) == codec.encode(fresh) and render(t) == render(fresh)
