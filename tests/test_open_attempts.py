"""adp.streams.aggregator.open_attempts: the deadline index that lets an expiry sweep touch only due
attempts, and the assembler's use of it (pure, no broker)."""

from __future__ import annotations

import random

from adp.streams.aggregator.assembly import TrajectoryAssembler
from adp.streams.aggregator.open_attempts import AttemptDeadlines
from tests.test_assembly import T0, attempt_events


def test_pop_due_returns_only_due_attempts_oldest_first():
    d = AttemptDeadlines()
    d.touch(0, ("a", "1"), 10.0)
    d.touch(0, ("b", "1"), 20.0)
    d.touch(0, ("c", "1"), 30.0)
    d.touch(1, ("x", "1"), 0.0)
    assert d.pop_due(0, now=25.0, expire_after=10.0) == [("a", "1")]
    assert d.pop_due(0, now=25.0, expire_after=10.0) == []  # popped once
    assert d.pop_due(0, now=100.0, expire_after=10.0) == [("b", "1"), ("c", "1")]
    assert (1, ("x", "1")) in d and len(d) == 1  # other scopes untouched
    assert d.pop_due(7, now=1e9, expire_after=1.0) == []  # unknown scope


def test_touch_moves_an_attempt_back_and_discard_forgets_it():
    d = AttemptDeadlines()
    d.touch(0, ("a", "1"), 10.0)
    d.touch(0, ("b", "1"), 11.0)
    d.touch(0, ("a", "1"), 50.0)  # a new event for a
    assert d.pop_due(0, now=30.0, expire_after=10.0) == [("b", "1")]
    d.discard(0, ("a", "1"))
    d.discard(0, ("never", "seen"))
    d.discard(9, ("a", "1"))
    assert len(d) == 0
    assert d.pop_due(0, now=1e9, expire_after=1.0) == []


def test_out_of_order_touches_are_sorted_before_a_sweep():
    d = AttemptDeadlines()
    d.touch(0, ("late", "1"), 100.0)
    d.touch(0, ("early", "1"), 5.0)  # e.g. a task that moved here from another partition
    assert d.pop_due(0, now=50.0, expire_after=10.0) == [("early", "1")]
    assert d.pop_due(0, now=200.0, expire_after=10.0) == [("late", "1")]


def test_rebuild_forgets_and_orders_entries():
    d = AttemptDeadlines()
    d.touch(3, ("gone", "1"), 0.0)
    d.rebuild([(0, ("b", "1"), 20.0), (0, ("a", "1"), 10.0), (1, ("c", "2"), 5.0)])
    assert (3, ("gone", "1")) not in d
    assert sorted(d.scopes()) == [0, 1]
    assert d.pop_due(0, now=1e9, expire_after=1.0) == [("a", "1"), ("b", "1")]
    assert list(d) == [(1, ("c", "2"), 5.0)]


def _brute_force_open(a: TrajectoryAssembler) -> set[tuple[int, str, str]]:
    return {
        (state["scope"], tid, aid)
        for tid, state in a.store.items()
        if "\x00" not in tid and "attempts" in state
        for aid in state["attempts"]
    }


def test_the_assembler_index_follows_its_store_and_expiry_matches_a_full_scan():
    """Random interleavings of complete, abandoned and redelivered attempts over two scopes:
    after every event the index holds exactly the open attempts of the store, and the number
    of expired attempts equals what a scan of the whole store would have dropped."""
    rng = random.Random(13)
    a = TrajectoryAssembler(expire_after=50, sweep_every=5)
    streams: dict[int, list] = {0: [], 1: []}
    for i in range(40):
        scope = i % 2
        t0 = T0 + i * 7
        events = attempt_events(
            f"t{i}", n_steps=rng.randint(0, 3), attempt_id=f"A{i}", t0=t0, finish=rng.random() < 0.6
        )
        if rng.random() < 0.3:  # a second attempt, maybe complete, of the same task
            events += attempt_events(
                f"t{i}", n_steps=1, attempt_id=f"B{i}", t0=t0 + 2, finish=rng.random() < 0.5
            )
        streams[scope] += events
    for events in streams.values():
        events.sort(key=lambda e: e.timestamp)
    for e0, e1 in zip(streams[0], streams[1]):
        for scope, event in ((0, e0), (1, e1)):
            a.feed(event, scope=scope)
            index = {(s, tid, aid) for s, (tid, aid), _ in a._deadlines}
            assert index == _brute_force_open(a)
    open_before = _brute_force_open(a)
    assert open_before, "the workload leaves some attempts open"
    assert a.expire(T0 + 10_000) == len(open_before)
    assert _brute_force_open(a) == set() and len(a._deadlines) == 0
    assert a.attempts_expired > len(open_before)  # sweeps along the way dropped some too


def test_reindex_picks_up_a_store_changed_behind_the_assemblers_back():
    store: dict = {}
    a = TrajectoryAssembler(store=store, expire_after=60)
    for e in attempt_events("mine", n_steps=1, attempt_id="M", finish=False):
        a.feed(e)
    # a rebalance restores another worker's open attempt into the same table
    other = TrajectoryAssembler(expire_after=60)
    for e in attempt_events("theirs", n_steps=1, attempt_id="T", finish=False):
        other.feed(e, scope=1)
    store.update(other.store)
    a.reindex()
    assert a.expire(T0 + 1000) == 2
    assert not [k for k in store if k.startswith(("mine", "theirs"))]
