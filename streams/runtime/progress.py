"""What a runtime has made of each partition it owns: the offsets it started and finished, the
point it may commit, the poison strikes it inherited with the partition, and when it lost one.

Invariant: a commit carries, for each partition this member still owns, the contiguous prefix
of finished offsets (streams/runtime/offsets.py) and, as metadata, the offsets running at that
moment with their strikes (streams/runtime/poison.py); a partition the member gave up is
forgotten at once, so nothing it finishes afterwards is ever committed by this member.

The worker (streams/runtime/worker.py) is the only writer: it starts and finishes offsets, hands
over the ledgers it read from the commit metadata of new partitions, and releases revoked ones.
The commits (streams/runtime/commits.py) only read `commit_points`, the watch (its lag gauge)
only `committable`. `epoch` counts revocations: work taken before one may belong to another
member by now, and the worker checks it before starting anything."""

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
        self.epoch = 0  # bumped on every revocation

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

    def revoke(self) -> None:
        """A revocation begins: what was taken before it is not ours to start any more."""
        self.epoch += 1

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget partitions this member gave up."""
        for tp in partitions:
            self._offsets.pop(tp, None)
            self._ledgers.pop(tp, None)

    def ledger(self, tp: TopicPartition) -> PoisonLedger:
        ledger = self._ledgers.get(tp)
        return PoisonLedger() if ledger is None else ledger

    # ---- what the commits and the watch read --------------------------------------------------

    def tracked(self) -> list[TopicPartition]:
        """Partitions with offsets started here and not released."""
        return list(self._offsets)

    def commit_points(
        self, partitions: Iterable[TopicPartition], clean: bool = False
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """What to commit for these partitions now: each one's contiguous done prefix, with the
        running offsets and strikes as metadata. `clean`: report nothing running (tasks were
        cancelled on purpose, which is no strike)."""
        points = {}
        for tp in partitions:
            tracker = self._offsets.get(tp)
            if tracker is None or tracker.committable is None:
                continue
            ledger = self._ledgers.setdefault(tp, PoisonLedger())
            running = set() if clean else tracker.running_offsets
            points[tp] = OffsetAndMetadata(
                tracker.committable, ledger.metadata(running, tracker.committable)
            )
        return points

    def committable(self) -> dict[TopicPartition, int | None]:
        """Per partition with started work: the offset below which everything is done."""
        return {tp: t.committable for tp, t in self._offsets.items()}
