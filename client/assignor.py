"""Every partition to one member: the consumer-group assignment of a group stream.

A group's samples are on several partitions, so one consumer must read them all to see a group
whole; splitting the partitions between two trainers would leave both with halves. The group
keeps Kafka's membership (a second trainer of the same name waits as a standby and takes over
when the first one dies; a deposed trainer's commits are refused by the coordinator), and this
assignor gives every partition to one member: the one that owned them before (each member says
so in its subscription's user data), else the first member id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

OWNER = b"adp-groups:owner"


def all_to_one(owns: Callable[[], bool]) -> type[AbstractPartitionAssignor]:
    """An assignor class (aiokafka calls its classmethods) whose member data comes from
    `owns()`: does this consumer hold the partitions now."""

    class AllToOne(AbstractPartitionAssignor):
        name = "adp-groups-all-to-one"
        version = 0

        @classmethod
        def assign(
            cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for m in members.values() for t in m.subscription})
            owned = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
            owners = sorted(m for m, meta in members.items() if meta.user_data == OWNER)
            chosen = owners[0] if owners else min(members)
            return {
                m: ConsumerProtocolMemberAssignment(cls.version, owned if m == chosen else [], b"")
                for m in members
            }

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(
                cls.version, list(topics), OWNER if owns() else b""
            )

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            pass

    return AllToOne
