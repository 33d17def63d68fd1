"""Partition progress through a rebalance (streams/runtime/progress.py): a held partition commits
nothing until the new assignment says it stayed; a lost one is never committed again."""

from __future__ import annotations

import json

from aiokafka import TopicPartition

from adp.streams.runtime.poison import PoisonLedger
from adp.streams.runtime.progress import PartitionProgress

A, B, C = (TopicPartition("adp.tasks.code", p) for p in range(3))


def started(*partitions: TopicPartition) -> PartitionProgress:
    progress = PartitionProgress()
    for tp in partitions:
        progress.inherit(tp, PoisonLedger())
        progress.start(tp, [10, 11])
    return progress


def test_the_hold_commit_is_clean_and_a_held_partition_then_commits_nothing():
    p = started(A, B)
    p.finish(A, 10)
    held = p.hold({A, B})
    assert held == [A, B]
    begin = p.commit_points(held, clean=True, holding=True)
    assert {tp: om.offset for tp, om in begin.items()} == {A: 11, B: 10}
    assert all(json.loads(om.metadata)["run"] == [] for om in begin.values())
    p.confirm_hold()
    p.finish(A, 11)  # a task that finishes while held: recorded, not committed
    assert p.commit_points([A, B]) == {}


def test_a_partition_assigned_again_is_kept_as_it_stands():
    p = started(A, B)
    p.hold({A, B})
    p.confirm_hold()
    p.finish(A, 10)
    kept, lost = p.settle({A, C})
    assert (kept, lost) == ({A}, {B})
    assert p.commit_points([A])[A].offset == 11  # the finish while held counts now
    assert json.loads(p.commit_points([A])[A].metadata)["run"] == [11]
    assert p.resume_at(A) == 12
    assert p.commit_points([B]) == {}  # lost: held until released, never committed
    p.release(lost)
    assert p.commit_points([B]) == {} and B not in p.tracked()
    assert not p.finish(B, 10)  # its tasks are another member's now


def test_without_a_confirmed_hold_commit_nothing_is_kept():
    # the member may have been out of the group: another one may have owned the partition
    p = started(A)
    p.hold({A})
    kept, lost = p.settle({A})
    assert (kept, lost) == (set(), {A})


def test_a_batch_abandoned_by_a_hold_is_fetched_again_and_bounds_the_commit():
    p = started(A)
    p.finish(A, 10)
    p.start(A, [12, 13])
    p.hold({A})
    p.confirm_hold()
    p.abandon(A, [12, 13])
    kept, _ = p.settle({A})
    assert kept == {A} and p.resume_at(A) == 12
    p.finish(A, 11)
    assert p.commit_points([A])[A].offset == 12


def test_the_epoch_moves_on_every_hold_and_revocation():
    p = PartitionProgress()
    before = p.epoch
    p.hold(set())
    p.revoke()
    assert p.epoch == before + 2


def test_busiest_partitions_come_first_in_the_claims():
    p = started(A, B)
    p.start(B, [12])
    p.finish(A, 10)
    assert p.busiest_first([C, A, B]) == [B, A, C]
