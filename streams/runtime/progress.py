"""What a runtime has made of each partition it owns: the offsets it started and finished, the
point it may commit, the poison strikes it inherited with the partition, and when it lost one.

Invariant: a commit carries, for each partition this member owns and does not hold, the
contiguous prefix of finished offsets (streams/runtime/offsets.py) and, as metadata, the offsets
running at that moment with their strikes (streams/runtime/poison.py); a partition the member
gave up is forgotten at once, so nothing it finishes afterwards is ever committed by this member.

A held partition is one in the middle of a rebalance (streams/runtime/rebalance.py): Kafka's
eager protocol takes every partition away until the new assignment is known, so whether it
stays here is not known yet. Its tasks keep running and their finishes are recorded, but nothing
of it is committed: the member may already have lost it. `settle` decides with the new
assignment: a partition assigned again, whose last commit before the hold went through (so no
other member can have owned it since), is kept as it stands; every other held one is lost.

The worker (streams/runtime/worker.py) is the only writer: it starts and finishes offsets, hands
over the ledgers it read from the commit metadata of new partitions, holds, settles and releases.
The commits (streams/runtime/commits.py) only read `commit_points`, the watch (its lag gauge)
only `committable`. `epoch` counts revocations and holds: work taken before one may belong to
another member by now, and the worker checks it before starting anything."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from adp.streams.runtime.offsets import PartitionOffsets
from adp.streams.runtime.poison import PoisonLedger


class PartitionProgress:
    """Per-partition offsets and poison ledgers of one runtime consumer (see the module doc)."""

    def __init__(self) -> None:
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._ledgers: dict[TopicPartition, PoisonLedger] = {}
        self._held: set[TopicPartition] = set()
        self._hold_committed = False  # the commit made when the hold began went through
        self.epoch = 0  # bumped on every revocation and hold

    # ---- the worker's side -------------------------------------------------------------------

    def inherit(self, tp: TopicPartition, ledger: PoisonLedger) -> None:
        """A newly assigned partition, with the strikes read from its commit metadata."""
        self._ledgers[tp] = ledger

    def start(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        tracker = self._offsets.setdefault(tp, PartitionOffsets())
        for offset in offsets:
            tracker.start(offset)

    def finish(self, tp: TopicPartition, offset: int) -> bool:
        """Mark `offset` done; False when the partition is no longer this member's (then its
        new owner redoes the task and nothing is recorded here)."""
        tracker = self._offsets.get(tp)
        if tracker is None:
            return False
        tracker.finish(offset)
        self.ledger(tp).clear(offset)
        return True

    def strikes(self, tp: TopicPartition, offset: int) -> int:
        return self.ledger(tp).of(offset)

    def abandon(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """Offsets started but never run (a revocation or hold came first)."""
        tracker = self._offsets.get(tp)
        if tracker is not None:
            tracker.abandon(set(offsets))

    def revoke(self) -> None:
        """A revocation begins: what was taken before it is not ours to start any more."""
        self.epoch += 1

    def hold(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """A rebalance took these partitions away until the new assignment is known: their
        running tasks go on, nothing of them is committed but the one commit that begins the
        hold (`commit_points(holding=True)`, then `confirm_hold`). Returns the held ones."""
        self.epoch += 1
        self._held = {tp for tp in partitions if tp in self._offsets}
        self._hold_committed = False
        return sorted(self._held)

    def confirm_hold(self) -> None:
        """The commit that began the hold went through: in the generation that ends, these
        partitions were this member's, and their commit stands as this member left it."""
        self._hold_committed = True

    def settle(
        self, assigned: set[TopicPartition]
    ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """The new assignment is known: (kept, lost) of the held partitions. Kept ones are
        this member's again as they stand; lost ones stay held until released (their tasks
        belong to another member now, or to nobody's tracker but the broker's commit)."""
        kept = self._held & assigned if self._hold_committed else set()
        lost = self._held - kept
        self._held = set(lost)
        return kept, lost

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget partitions this member gave up."""
        for tp in partitions:
            self._offsets.pop(tp, None)
            self._ledgers.pop(tp, None)
            self._held.discard(tp)

    def ledger(self, tp: TopicPartition) -> PoisonLedger:
        ledger = self._ledgers.get(tp)
        return PoisonLedger() if ledger is None else ledger

    # ---- what the commits and the watch read --------------------------------------------------

    def tracked(self) -> list[TopicPartition]:
        """Partitions with offsets started here and not released."""
        return list(self._offsets)

    def resume_at(self, tp: TopicPartition) -> int | None:
        """Where fetching goes on in a kept partition: past everything started here."""
        tracker = self._offsets.get(tp)
        return tracker.resume_at if tracker is not None else None

    def busiest_first(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """These partitions, the ones running the most tasks first."""
        running = {tp: t.running for tp, t in self._offsets.items()}
        return sorted(partitions, key=lambda tp: (-running.get(tp, 0), tp))

    def commit_points(
        self,
        partitions: Iterable[TopicPartition],
        clean: bool = False,
        holding: bool = False,
        paused: dict | None = None,
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """What to commit for these partitions now: each one's contiguous done prefix, with the
        running offsets and strikes as metadata. `clean`: report nothing running (tasks were
        cancelled on purpose, or may be, which is no strike). Held partitions are left out but
        for the commit that begins the hold (`holding`). `paused`: the outage note
        (streams/runtime/breaker.py) the metadata carries while the runtime is paused."""
        points = {}
        for tp in partitions:
            tracker = self._offsets.get(tp)
            if tracker is None or tracker.committable is None:
                continue
            if tp in self._held and not holding:
                continue
            ledger = self._ledgers.setdefault(tp, PoisonLedger())
            running = set() if clean else tracker.running_offsets
            points[tp] = OffsetAndMetadata(
                tracker.committable, ledger.metadata(running, tracker.committable, paused)
            )
        return points

    def committable(self) -> dict[TopicPartition, int | None]:
        """Per partition with started work: the offset below which everything is done."""
        return {tp: t.committable for tp, t in self._offsets.items()}
