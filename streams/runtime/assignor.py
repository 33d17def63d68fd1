"""How a runtime group shares its lane partitions: every lane evenly over the members, and as few
partitions moved as that allows (a partition that moves has its running tasks cancelled and
redone by its new owner, streams/runtime/rebalance.py).

The rule, per topic (each lane is a topic), members in a stable order:
- quotas: with n partitions and m subscribed members each member gets n // m, and n % m of them
  one more; the extra ones go first to members that already hold more than n // m of the topic,
  then to the members with the fewest partitions so far over all topics (so the extras of
  several topics do not pile up on one member);
- every member keeps its previous partitions up to its quota, in the order it listed them
  (the runtime lists its busiest partitions first, so the ones it gives up run the fewest
  tasks); a partition claimed by two members (one of them was out of the group meanwhile) goes
  to the claimant holding the fewest of that topic;
- the partitions left over go to the members below quota, the least loaded first.

Kafka's own sticky assignor balances the total count only: adding a second runtime gave it the
high and low lanes and left the whole default lane, where most work is, on the first one. Round
robin balances every lane but moves most partitions on every change.

The previous assignment travels in each member's join metadata (JSON in the protocol's user
data), as Kafka's sticky assignors do; the group leader runs `assign`. The protocol is offered
before round robin, so a group with members that do not know it yet (a rolling upgrade) agrees
on round robin until they all do."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger(__name__)

Claims = Mapping[str, list[TopicPartition]]  # member -> its previous partitions, preferred first


def assign_lanes(
    partitions: Mapping[str, int],
    subscriptions: Mapping[str, Iterable[str]],
    claims: Claims,
) -> dict[str, list[TopicPartition]]:
    """member -> its partitions (see the module doc). `partitions`: topic -> partition count."""
    members = sorted(subscriptions)
    out: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for topic in sorted(partitions):
        subscribed = [m for m in members if topic in set(subscriptions[m])]
        if subscribed and partitions[topic] > 0:
            _assign_topic(topic, partitions[topic], subscribed, claims, out)
    return {m: sorted(tps) for m, tps in out.items()}


def _assign_topic(
    topic: str,
    count: int,
    members: list[str],
    claims: Claims,
    out: dict[str, list[TopicPartition]],
) -> None:
    wanted = _claims_of_topic(topic, count, members, claims)
    base, extra = divmod(count, len(members))
    by_preference = sorted(members, key=lambda m: (-len(wanted[m]), len(out[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_preference)}
    taken: set[int] = set()
    for m in members:
        for tp in wanted[m][: quota[m]]:
            out[m].append(tp)
            taken.add(tp.partition)
    for p in range(count):
        if p in taken:
            continue
        room = [m for m in members if _count(out[m], topic) < quota[m]]
        m = min(room, key=lambda m: (_count(out[m], topic), len(out[m]), m))
        out[m].append(TopicPartition(topic, p))


def _claims_of_topic(
    topic: str, count: int, members: list[str], claims: Claims
) -> dict[str, list[TopicPartition]]:
    """Each member's valid claims on `topic`, in its order; a partition claimed twice goes to
    the claimant with the fewest claims on the topic (then the lower member id)."""
    mine = {
        m: [tp for tp in claims.get(m, []) if tp.topic == topic and 0 <= tp.partition < count]
        for m in members
    }
    owner: dict[TopicPartition, str] = {}
    for m in sorted(members, key=lambda m: (len(mine[m]), m)):
        for tp in mine[m]:
            owner.setdefault(tp, m)
    return {m: [tp for tp in dict.fromkeys(mine[m]) if owner[tp] == m] for m in members}


def _count(tps: list[TopicPartition], topic: str) -> int:
    return sum(1 for tp in tps if tp.topic == topic)


class LaneStickyAssignor:
    """The rule above as an aiokafka partition assignor. One instance per consumer: it keeps
    that consumer's last assignment (aiokafka's own assignors keep theirs in class attributes,
    shared by every consumer of the process). `rank` orders this member's partitions for its
    claims, the ones it would rather keep first."""

    name = "adp-lanes-sticky"
    version = 0

    def __init__(
        self, rank: Callable[[list[TopicPartition]], list[TopicPartition]] | None = None
    ) -> None:
        self._rank = rank or sorted
        self.owned: list[TopicPartition] = []

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        claims = [[tp.topic, tp.partition] for tp in self._rank(list(self.owned))]
        user_data = json.dumps({"claims": claims}, separators=(",", ":")).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.owned = assignment.partitions()

    def assign(
        self, cluster, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        subscriptions = {m: list(meta.subscription) for m, meta in members.items()}
        topics = {t for subscribed in subscriptions.values() for t in subscribed}
        partitions = {}
        for topic in topics:
            known = cluster.partitions_for_topic(topic)
            if known is None:
                log.warning("no metadata for topic %s; it gets no members this round", topic)
                continue
            partitions[topic] = len(known)
        claims = {m: _decode_claims(meta.user_data) for m, meta in members.items()}
        result = assign_lanes(partitions, subscriptions, claims)
        return {
            m: ConsumerProtocolMemberAssignment(self.version, _by_topic(tps), b"")
            for m, tps in result.items()
        }


def _decode_claims(user_data: bytes | None) -> list[TopicPartition]:
    if not user_data:
        return []
    try:
        return [TopicPartition(str(t), int(p)) for t, p in json.loads(user_data)["claims"]]
    except (ValueError, TypeError, KeyError) as exc:
        # a member's claims are a hint for stickiness, never needed for a correct assignment
        log.warning("ignoring unreadable assignor metadata (%s): %r", exc, user_data[:200])
        return []


def _by_topic(tps: list[TopicPartition]) -> list[tuple[str, list[int]]]:
    grouped: dict[str, list[int]] = {}
    for tp in sorted(tps):
        grouped.setdefault(tp.topic, []).append(tp.partition)
    return list(grouped.items())
