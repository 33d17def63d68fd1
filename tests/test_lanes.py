"""Priority lanes without a broker: how priorities map to lane topics (streams/kafka/topics.py) and
which lane a free slot takes from (streams/runtime/lanes.py). The broker-side behaviour is in
tests/test_runtime_discipline.py (section 6)."""

from __future__ import annotations

import pytest

from adp.schemas.contracts import TaskType
from adp.streams.kafka import topics
from adp.streams.runtime.lanes import LaneScheduler, check_min_share

HIGH, DEFAULT, LOW = range(3)


# --------------------------------------------------------------------------- topics


def test_every_priority_has_exactly_one_lane_and_default_priority_keeps_the_old_topic():
    lanes = {p: topics.lane_for_priority(p).name for p in range(1, 11)}
    assert lanes == {
        1: "low",
        2: "low",
        3: "low",
        4: "default",
        5: "default",
        6: "default",
        7: "default",
        8: "high",
        9: "high",
        10: "high",
    }
    # priority 5 is the task default: such tasks land where every earlier version put them
    assert topics.topic_for_task("code", 5) == "adp.tasks.code" == topics.task_topic("code")
    assert topics.topic_for_task("web", 10) == "adp.tasks.web.high"
    assert topics.topic_for_task("reasoning", 1) == "adp.tasks.reasoning.low"
    for bad in (0, 11):
        with pytest.raises(ValueError, match=r"outside 1..10"):
            topics.lane_for_priority(bad)


def test_lane_topics_are_highest_first_and_map_back_to_their_lane():
    assert topics.lane_topics("code") == [
        "adp.tasks.code.high",
        "adp.tasks.code",
        "adp.tasks.code.low",
    ]
    for t in TaskType:
        for lane, topic in zip(topics.LANES, topics.lane_topics(t)):
            assert topics.lane_of(topic) == lane
    for foreign in (
        "adp.steps",
        "adp.tasks.",
        "adp.tasks.chess",
        "adp.tasks.code.urgent",
        "x.adp.tasks.code",
    ):
        with pytest.raises(ValueError, match="not a task topic"):
            topics.lane_of(foreign)
    with pytest.raises(ValueError, match="lanes are high, default, low"):
        topics.task_topic("code", "urgent")


def test_every_lane_topic_is_created_like_the_default_one():
    specs = {s.name: s for s in topics.platform_topics()}
    for t in TaskType:
        default = specs[topics.task_topic(t)]
        for topic in topics.lane_topics(t):
            assert (specs[topic].partitions, specs[topic].configs) == (
                default.partitions,
                default.configs,
            )


# --------------------------------------------------------------------------- scheduler


def run(
    scheduler: LaneScheduler, waiting: list[bool], n: int, ready: list[bool] | None = None
) -> list[int]:
    return [scheduler.pick(waiting, ready or waiting) for _ in range(n)]


def test_strict_priority_when_min_share_is_zero():
    s = LaneScheduler(3, min_share=0)
    assert set(run(s, [True, True, True], 100)) == {HIGH}
    assert set(run(s, [False, True, True], 10)) == {DEFAULT}
    assert run(s, [False, False, True], 3) == [LOW] * 3
    assert s.pick([False, False, False], [False, False, False]) is None


def test_a_lower_lane_gets_exactly_its_share_while_a_higher_one_keeps_work():
    s = LaneScheduler(3, min_share=0.2)
    picks = run(s, [True, False, True], 1000)
    assert picks.count(LOW) == 200 and picks.count(HIGH) == 800
    # evenly spread: never more than 4 high starts in a row, never two low in a row
    assert "0" * 5 not in "".join(map(str, picks)) and "22" not in "".join(map(str, picks))


@pytest.mark.parametrize("share", [0.05, 0.2, 0.3, 1 / 3])
def test_every_lower_lane_gets_its_share_with_all_three_lanes_busy(share):
    s = LaneScheduler(3, min_share=share)
    picks = run(s, [True, True, True], 3000)
    for lane in (DEFAULT, LOW):
        assert abs(picks.count(lane) - share * 3000) <= 1, (lane, picks.count(lane))
    assert picks.count(HIGH) >= picks.count(DEFAULT)


def test_no_credit_is_banked_while_higher_lanes_are_idle_or_the_lane_is_empty():
    s = LaneScheduler(2, min_share=0.25)
    run(s, [False, True], 50)  # low alone: every slot, and no credit for later
    assert run(s, [True, True], 4) == [0, 0, 0, 1]  # it earns its share afresh
    run(s, [True, False], 50)  # low empty while high runs: its credit is gone too
    assert run(s, [True, True], 4) == [0, 0, 0, 1]


def test_a_due_lane_without_a_record_at_hand_takes_the_first_slot_after_it_has_one():
    s = LaneScheduler(2, min_share=0.5)
    # low has work on the broker, but nothing fetched yet: high gets the slots meanwhile
    assert run(s, [True, True], 6, ready=[True, False]) == [0] * 6
    # its credit was capped: one owed start, not six
    assert run(s, [True, True], 3) == [1, 0, 1]


def test_a_lower_lane_fills_the_slot_while_the_higher_lane_is_still_being_fetched():
    s = LaneScheduler(3, min_share=0.2)
    # high is known to have work but none of it is at hand yet: a free slot is not left idle
    assert s.pick([True, False, True], [False, False, True]) == LOW
    assert s.pick([True, False, True], [True, False, True]) == HIGH


def test_an_urgent_task_takes_the_next_free_slot_unless_a_lower_lane_is_due():
    s = LaneScheduler(3, min_share=0.2)
    assert run(s, [False, False, True], 200) == [LOW] * 200  # a backlog of low work alone
    # one urgent task arrives: it is the very next start
    assert s.pick([True, False, True], [True, False, True]) == HIGH


def test_min_share_bounds():
    assert check_min_share(1 / 3, 3) == pytest.approx(1 / 3)
    assert check_min_share(0.5, 2) == 0.5
    for bad in (-0.1, 0.34, 1.0):
        with pytest.raises(ValueError, match=r"min share must be between 0 and 0.333"):
            LaneScheduler(3, min_share=bad)
    with pytest.raises(ValueError, match="expected 3 lanes"):
        LaneScheduler(3).pick([True], [True])
