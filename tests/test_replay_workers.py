"""How `adp replay --workers` shares a range out and merges what the workers report (pure
logic; the processes themselves run in tests/test_replay.py on the broker)."""

from __future__ import annotations

from aiokafka import TopicPartition

from adp.streams.inspection.replay import ReplaySummary
from adp.streams.inspection.replay_workers import MIN_RECORDS_PER_WORKER, auto_workers, merge, split
from adp.streams.kafka.reader import Range


def rng(sizes: list[int], first: int = 100) -> Range:
    tps = [TopicPartition("adp.steps", p) for p in range(len(sizes))]
    return Range(start={tp: first for tp in tps}, end={tp: first + n for tp, n in zip(tps, sizes)})


def test_shares_hold_every_partition_once_with_its_offsets_and_balanced_loads():
    whole = rng([900, 100, 500, 500, 0, 300, 300, 100])
    shares = split(whole, 3)
    assert len(shares) == 3
    seen = [tp for s in shares for tp in s.start]
    assert sorted(seen) == sorted(whole.start)
    assert len(seen) == len(set(seen))
    for s in shares:
        for tp in s.start:
            assert (s.start[tp], s.end[tp]) == (whole.start[tp], whole.end[tp])
    assert sum(s.total for s in shares) == whole.total
    assert sorted(s.total for s in shares) == [900, 900, 900]


def test_more_workers_than_partitions_with_records_gives_one_share_each():
    shares = split(rng([10, 0, 0, 7]), 4)
    assert sorted(s.total for s in shares) == [7, 10]
    assert split(rng([0, 0]), 2)[0].total == 0  # nothing to read: one (empty) share


def test_auto_workers_counts_cpus_partitions_and_records():
    big = MIN_RECORDS_PER_WORKER * 10
    assert auto_workers(rng([big] * 6), cpus=2) == 2
    assert auto_workers(rng([big, 0, 0]), cpus=8) == 1  # one partition holds everything
    assert auto_workers(rng([MIN_RECORDS_PER_WORKER // 4] * 6), cpus=8) == 1  # too little
    assert auto_workers(rng([MIN_RECORDS_PER_WORKER // 2] * 6), cpus=8) == 3
    assert auto_workers(rng([MIN_RECORDS_PER_WORKER] * 6), cpus=8) == 6


def test_merged_summaries_add_up_and_count_each_task_id_once():
    a = ReplaySummary(
        source="adp.steps",
        destination="out",
        records_read=10,
        trajectories_written=2,
        incomplete_attempts=1,
        assembler={"events": 10, "completed": 2},
        written_task_ids={"t1", "t2"},
    )
    b = ReplaySummary(
        source="adp.steps",
        destination="out",
        records_read=5,
        undecodable=1,
        trajectories_written=2,
        assembler={"events": 4, "completed": 2},
        written_task_ids={"t2", "t3"},
    )
    m = merge([a, b], total=15, seconds=2.0)
    assert (m.records_read, m.total_in_range, m.trajectories_written, m.task_ids) == (15, 15, 4, 3)
    assert m.assembler == {"events": 14, "completed": 4} and m.undecodable == 1
    assert m.incomplete_attempts == 1 and m.workers == 2 and m.rate == 7.5
    assert "written_task_ids" not in m.as_dict() and m.as_dict()["workers"] == 2
