"""The runtime group's assignor (streams/runtime/assignor.py): every lane shared evenly, as few
partitions moved as that allows. Pure; the broker-side behaviour is in tests/test_rebalance.py."""

from __future__ import annotations

from collections import Counter

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from hypothesis import given
from hypothesis import strategies as st

from adp.streams.runtime.assignor import LaneStickyAssignor, assign_lanes

LANES = ["adp.tasks.code.high", "adp.tasks.code", "adp.tasks.code.low"]


def step(previous: dict[str, list[TopicPartition]], members: list[str], n: int = 6):
    """One rebalance: each member claims what it had; -> (assignment, partitions moved)."""
    subscriptions = {m: LANES for m in members}
    new = assign_lanes(
        {t: n for t in LANES}, subscriptions, {m: previous.get(m, []) for m in members}
    )
    moved = sum(1 for m in members for tp in previous.get(m, []) if tp not in new[m])
    return new, moved


def per_lane(tps: list[TopicPartition]) -> Counter:
    return Counter(tp.topic for tp in tps)


def test_scaling_1_3_1_keeps_every_lane_even_and_moves_only_what_it_must():
    assignment: dict[str, list[TopicPartition]] = {}
    moves = []
    for members in (["a"], ["a", "b"], ["a", "b", "c"], ["a", "b"], ["a"]):
        assignment, moved = step(assignment, members)
        moves.append(moved)
        for m in members:  # every lane shared evenly: 6 partitions over the members
            assert set(per_lane(assignment[m]).values()) == {6 // len(members)}, assignment
        every = [tp for m in members for tp in assignment[m]]
        assert len(every) == len(set(every)) == 18
    # 1->2: half of a's partitions go to b; 2->3: a third; leaving members' partitions are
    # taken over, nobody else's moves
    assert moves == [0, 9, 6, 0, 0]


def test_a_member_keeps_the_partitions_it_lists_first():
    busy = [TopicPartition(LANES[1], p) for p in (5, 4, 3)]  # the ones running tasks
    rest = [TopicPartition(LANES[1], p) for p in (0, 1, 2)]
    new = assign_lanes({LANES[1]: 6}, {"a": [LANES[1]], "b": [LANES[1]]}, {"a": busy + rest})
    assert new["a"] == sorted(busy) and new["b"] == sorted(rest)


def test_a_partition_claimed_twice_goes_to_one_member():
    tp = TopicPartition(LANES[0], 0)
    claims = {"a": [tp, TopicPartition(LANES[0], 1)], "b": [tp]}
    new = assign_lanes({LANES[0]: 2}, {"a": [LANES[0]], "b": [LANES[0]]}, claims)
    assert sorted(new["a"] + new["b"]) == [tp, TopicPartition(LANES[0], 1)]
    assert new["b"] == [tp]  # the claimant with fewer claims keeps it; a keeps its other one


def test_claims_on_partitions_that_are_gone_or_unsubscribed_are_ignored():
    claims = {"a": [TopicPartition(LANES[0], 9), TopicPartition("elsewhere", 0)]}
    new = assign_lanes({LANES[0]: 2}, {"a": [LANES[0]]}, claims)
    assert new == {"a": [TopicPartition(LANES[0], 0), TopicPartition(LANES[0], 1)]}


def test_extras_spread_over_members_across_lanes():
    # 3 lanes of 4 partitions over 3 members: each lane has one extra; no member gets all three
    new = assign_lanes({t: 4 for t in LANES}, {m: LANES for m in "abc"}, {})
    assert sorted(len(tps) for tps in new.values()) == [4, 4, 4]


@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=6),
    st.integers(1, 12),
)
def test_any_sequence_of_group_sizes_gives_every_partition_to_exactly_one_member(sizes, n):
    assignment: dict[str, list[TopicPartition]] = {}
    for size in sizes:
        members = [f"m{i}" for i in range(size)]
        assignment, _ = step(assignment, members, n)
        every = [tp for m in members for tp in assignment[m]]
        assert sorted(every) == sorted(TopicPartition(t, p) for t in LANES for p in range(n))
        for m in members:
            counts = per_lane(assignment[m])
            assert all(n // size <= counts.get(t, 0) <= -(-n // size) for t in LANES)


class Cluster:
    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def partitions_for_topic(self, topic: str):
        return set(range(self.counts[topic])) if topic in self.counts else None


def test_the_aiokafka_adapter_carries_claims_through_join_metadata():
    a, b = LaneStickyAssignor(), LaneStickyAssignor()
    cluster = Cluster({t: 6 for t in LANES})
    first = a.assign(cluster, {"a": a.metadata(LANES)})
    a.on_assignment(first["a"])
    assert len(a.owned) == 18
    second = a.assign(cluster, {"a": a.metadata(LANES), "b": b.metadata(LANES)})
    kept = set(second["a"].partitions())
    assert kept <= set(a.owned) and len(kept) == 9
    assert set(second["b"].partitions()) == set(a.owned) - kept


def test_unreadable_claims_are_only_a_lost_hint():
    junk = ConsumerProtocolMemberMetadata(0, LANES, b"\x00not json")
    result = LaneStickyAssignor().assign(Cluster({t: 2 for t in LANES}), {"a": junk})
    assert len(result["a"].partitions()) == 6
