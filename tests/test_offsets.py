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
