"""streams/kafka/aiokafka_fixes.py: a consumer offering several assignors joins its group with
one JoinGroup that offers them all (aiokafka 0.14 sent one per assignor, each starting another
rebalance). Pure: a recording coordinator stands in for the broker; the runtimes' real groups
are exercised in tests/test_rebalance.py and tests/faults/."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiokafka.errors as Errors
from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from adp.streams.kafka import clients  # noqa: F401 - applies the fixes
from adp.streams.runtime.assignor import LaneStickyAssignor


class RecordingCoordinator:
    """Answers the first JoinGroup with a member id to use (KIP-394), the next with `last`."""

    def __init__(self, last: int) -> None:
        self.member_id = ""
        self.generation = -1
        self._group_instance_id = None
        self._rebalance_timeout_ms = 10_000
        self.requests: list = []
        self.answers = [(Errors.MemberIdRequired.errno, "member-1"), (last, "member-1")]
        self.reset = 0

    async def _send_req(self, request):
        # read at send time: aiokafka's request holds the list it was given, which it kept
        # appending to after sending
        self.requests.append(
            SimpleNamespace(
                protocols=[name for name, _ in request._group_protocols],
                member_id=request._member_id,
            )
        )
        code, member = self.answers.pop(0)
        return SimpleNamespace(error_code=code, member_id=member)

    def reset_generation(self) -> None:
        self.reset += 1


def join(coordinator: RecordingCoordinator, assignors: list) -> object:
    subscription = SimpleNamespace(topics={"adp.tasks.code"}, active=True)
    rebalance = CoordinatorGroupRebalance(
        coordinator, "adp-runtime-code", 1, subscription, assignors, 10_000, 100
    )
    return asyncio.run(rebalance.perform_group_join())


def test_every_join_request_offers_every_assignor_once():
    coordinator = RecordingCoordinator(last=Errors.UnknownMemberIdError.errno)
    assignors = [LaneStickyAssignor(), RoundRobinPartitionAssignor]
    assert join(coordinator, assignors) is None  # the member id was unknown: join again
    names = [a.name for a in assignors]
    assert [r.protocols for r in coordinator.requests] == [names, names]
    # the second request is the KIP-394 retry with the member id the broker gave
    assert [r.member_id for r in coordinator.requests] == ["", "member-1"]
    assert coordinator.reset == 1  # the answer is handled as aiokafka does


def test_a_fatal_answer_still_raises():
    coordinator = RecordingCoordinator(last=Errors.InconsistentGroupProtocolError.errno)
    try:
        join(coordinator, [LaneStickyAssignor(), RoundRobinPartitionAssignor])
    except Errors.InconsistentGroupProtocolError:
        pass
    else:
        raise AssertionError("an inconsistent group protocol must end the join")
    assert len(coordinator.requests) == 2
