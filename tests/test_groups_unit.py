"""The pure part of the group stream (client/ledger.py, client/groups.py), without a broker:
the checkpoint's encoding, and a simulation of a trainer that crashes at random points while
groups' samples arrive interleaved over several partitions: restarted from its last commit,
every group is delivered, and a group whose acknowledgement was committed never comes again."""

from __future__ import annotations

import random
import zlib

import pytest

from adp.client.groups import GroupAssembler, GroupFilter
from adp.client.ledger import Checkpoint, PartitionLedger
from adp.schemas.contracts import Trajectory


def sample(task_id: str, i: int, k: int, passed: bool | None = True, version: int = 0):
    return Trajectory.model_validate(
        {
            "task_id": task_id,
            "task_type": "code",
            "description": "d",
            "policy_version": version,
            "sample_index": i,
            "success": bool(passed),
            "verification": None
            if passed is None
            else {"verifier": "answer", "passed": passed, "score": float(passed)},
            "steps": [],
            "final_result": "",
            "total_duration": 0.0,
            "metadata": {
                "runtime_id": "r",
                "attempt_id": f"a-{task_id}-{i}",
                "started_at": 0.0,
                "finished_at": 0.0,
                "llm_calls": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_llm_calls": 0,
                "task": {"task_id": task_id, "samples": k},
            },
        }
    )


def test_checkpoints_encode_and_decode_exactly():
    rng = random.Random(7)
    for _ in range(200):
        offset = rng.randint(0, 10**12)
        held = sorted({offset + rng.randint(0, 10**6) for _ in range(rng.randint(0, 30))})
        read_to = max([offset, *held]) + rng.randint(0, 1000)
        c = Checkpoint(offset, read_to, tuple(held))
        assert Checkpoint.decode(offset, c.encode()) == c
    # a commit another tool made (or none of ours): just its offset
    assert Checkpoint.decode(42, "") == Checkpoint(42, 42)
    assert Checkpoint.decode(42, '{"run": [1]}') == Checkpoint(42, 42)
    assert Checkpoint.decode(42, "adp-groups/1;zz;!") == Checkpoint(42, 42)


def test_a_ledger_skips_what_was_done_before_its_checkpoint():
    ledger = PartitionLedger(Checkpoint(10, 20, (10, 14)))
    assert [o for o in range(10, 22) if ledger.delivered_before(o)] == [
        11,
        12,
        13,
        15,
        16,
        17,
        18,
        19,
    ]
    ledger.read(10, hold=True)
    for o in (11, 12, 13):
        ledger.read(o, hold=False)
    # 14 is not read again yet: still waiting, so the checkpoint stays at 10
    assert ledger.checkpoint() == Checkpoint(10, 20, (10, 14))
    ledger.release(10)
    assert ledger.checkpoint() == Checkpoint(14, 20, (14,))
    ledger.read(14, hold=False)
    assert ledger.checkpoint() == Checkpoint(15, 20, ())


def publish(groups: int, k: int, partitions: int, rng: random.Random) -> dict[int, list]:
    """Samples of `groups` tasks written in a shuffled order over the partitions (by key, as
    Kafka's partitioner would): groups interleave and complete out of order."""
    records = [(f"t{g}", i) for g in range(groups) for i in range(k)]
    rng.shuffle(records)
    logs: dict[int, list] = {p: [] for p in range(partitions)}
    for task_id, i in records:
        p = zlib.crc32(f"{task_id}/{i}".encode()) % partitions
        logs[p].append(sample(task_id, i, k, passed=rng.random() < 0.5))
    return logs


def run_trainer(logs, committed, rng, delivered, acked, crash_after: int | None):
    """A trainer from `committed` checkpoints: reads the partitions in random chunks,
    acknowledges every group it gets and commits after each (noting it in `acked`); crashes
    (loses everything not committed) after `crash_after` deliveries, holding its last group or
    right after a commit. Returns the checkpoints of its last commit."""
    assembler = GroupAssembler(dict(committed), GroupFilter())
    positions = {p: c.offset for p, c in committed.items()}
    while any(positions[p] < len(logs[p]) for p in logs):
        p = rng.choice([p for p in logs if positions[p] < len(logs[p])])
        for _ in range(rng.randint(1, 3)):
            if positions[p] >= len(logs[p]):
                break
            offset = positions[p]
            positions[p] += 1
            group = assembler.add(p, offset, 0, logs[p][offset])
            if group is None or not assembler.decide(group):
                continue
            delivered.append(group.task_id)
            if crash_after is not None and len(delivered) >= crash_after and rng.random() < 0.5:
                return committed  # killed between delivery and acknowledgement
            assembler.acknowledge(group)
            committed = assembler.checkpoints()
            acked.append(group.task_id)
            if crash_after is not None and len(delivered) >= crash_after:
                return committed  # killed right after a commit
    return assembler.checkpoints()


@pytest.mark.parametrize("seed", range(40))
def test_a_trainer_crashing_anywhere_gets_every_group_once_after_its_commit(seed):
    rng = random.Random(seed)
    groups, k, parts = rng.randint(5, 40), rng.randint(1, 5), rng.randint(1, 4)
    logs = publish(groups, k, parts, rng)
    committed = {p: Checkpoint(0, 0) for p in logs}
    acked: list[str] = []
    for crash in [rng.randint(1, groups) for _ in range(rng.randint(0, 4))] + [None]:
        delivered: list[str] = []
        before = set(acked)
        committed = run_trainer(logs, committed, rng, delivered, acked, crash)
        # a group acknowledged (and so committed) is never handed out again
        assert not before & set(delivered), f"delivered again: {before & set(delivered)}"
        assert len(delivered) == len(set(delivered))
    # every group acknowledged exactly once, over all the runs
    assert sorted(acked) == sorted(f"t{g}" for g in range(groups))
    # the last run commits everything: nothing is held
    assert all(c.held == () for c in committed.values())
    assert {p: c.offset for p, c in committed.items()} == {p: len(logs[p]) for p in logs}


def test_filters_drop_groups_and_release_their_records():
    a = GroupAssembler({0: Checkpoint(0, 0)}, GroupFilter(min_spread=0.5, max_staleness=1))
    done = [a.add(0, i, 0, sample("same", i, 2, passed=True)) for i in range(2)]
    assert done[0] is None and done[1].rewards == [1.0, 1.0]
    assert not a.decide(done[1])  # all passed: no spread
    mixed = [a.add(0, 2 + i, 0, sample("mixed", i, 2, passed=i == 0)) for i in range(2)][1]
    assert a.decide(mixed, policy_version=1) and mixed.spread == 1.0
    old = [a.add(0, 4 + i, 0, sample("old", i, 2, passed=i == 0, version=1)) for i in range(2)]
    assert not a.decide(old[1], policy_version=3)
    assert dict(a.stats.dropped) == {
        "rewards spread less than --min-spread": 1,
        "policy older than --max-staleness versions": 1,
    }
    # only the delivered group still holds records
    assert a.checkpoints()[0] == Checkpoint(2, 6, (2, 3))
    a.acknowledge(mixed)
    assert a.checkpoints()[0] == Checkpoint(6, 6, ())


def test_overdue_groups_go_out_incomplete_and_a_resent_sample_is_kept_once():
    a = GroupAssembler({0: Checkpoint(0, 0), 1: Checkpoint(0, 0)}, GroupFilter())
    a.add(0, 0, 1000, sample("late", 0, 3))
    a.add(1, 0, 1500, sample("late", 1, 3))
    a.add(1, 1, 1600, sample("late", 1, 3))  # the same sample again: the last one counts
    assert a.checkpoints()[1] == Checkpoint(1, 2, (1,))
    assert list(a.overdue(999)) == []
    [late] = a.overdue(1000)
    assert (late.complete, late.missing, len(late.samples)) == (False, [2], 2)
    assert a.decide(late) and a.stats.incomplete == 1
    # a sample of a delivered group arriving later is not a new group
    assert a.add(0, 1, 2000, sample("late", 2, 3)) is None and "late" not in a.open
