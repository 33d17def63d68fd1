"""The commit point only advances over a contiguous prefix of finished offsets."""

from hypothesis import given
from hypothesis import strategies as st

from adp.streams.runtime.offsets import PartitionOffsets


def test_out_of_order_finishes_commit_only_the_contiguous_prefix():
    p = PartitionOffsets()
    for o in (10, 11, 12, 13):
        p.start(o)
    assert p.finish(12) is None  # 10 and 11 still running
    assert p.finish(10) == 11  # 10 done; 11 bounds the commit
    assert p.finish(11) == 13  # 11 and 12 done; 13 still running
    assert p.running == 1
    assert p.finish(13) == 14


def test_gaps_in_offsets_do_not_block_the_commit():
    p = PartitionOffsets()
    for o in (5, 9):  # 6..8 were compacted away or are transaction markers
        p.start(o)
    assert p.finish(9) is None
    assert p.finish(5) == 10


@given(st.permutations(list(range(30))))
def test_commit_never_passes_a_running_offset(order):
    p = PartitionOffsets()
    for o in range(30):
        p.start(o)
    done: set[int] = set()
    for o in order:
        position = p.finish(o)
        done.add(o)
        if position is not None:
            # everything below the commit point is finished, the commit point itself is not
            assert set(range(position)) <= done
            assert position == 30 or position not in done
    assert p.committable == 30


def test_resume_at_is_past_everything_started_and_not_abandoned():
    p = PartitionOffsets()
    assert p.resume_at is None  # nothing started: the committed offset says where to fetch
    for o in (10, 11, 12, 13):
        p.start(o)
    assert p.resume_at == 14
    p.finish(13)  # finished but not committable yet: still must not be fetched again
    assert p.resume_at == 14
    p.finish(10)
    assert (p.committable, p.resume_at) == (11, 14)


def test_an_abandoned_batch_is_fetched_again_and_never_committed_past():
    p = PartitionOffsets()
    for o in (10, 11):
        p.start(o)
    p.finish(10)
    for o in (12, 13):  # a batch taken, then a revocation came before it ran
        p.start(o)
    p.abandon({12, 13})
    assert (p.committable, p.resume_at, p.running) == (11, 12, 1)
    assert p.finish(11) == 12  # the abandoned offsets bound the commit as unstarted ones do
    assert p.resume_at == 12


def test_abandoning_everything_leaves_the_first_offset_to_fetch_and_commit():
    p = PartitionOffsets()
    for o in (7, 8):
        p.start(o)
    p.abandon([7, 8])
    assert (p.committable, p.resume_at, p.running) == (7, 7, 0)


@given(st.integers(1, 30), st.data())
def test_resume_at_never_refetches_a_started_offset_nor_skips_an_unstarted_one(n, data):
    p = PartitionOffsets()
    kept = data.draw(st.integers(0, n))
    for o in range(n):
        p.start(o)
    p.abandon(set(range(kept, n)))  # the latest batch was abandoned
    assert p.resume_at == kept
    for o in data.draw(st.permutations(list(range(kept)))):
        p.finish(o)
        assert p.resume_at == kept
    assert p.committable == kept
