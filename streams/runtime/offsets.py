"""Which offset a runtime may commit, per partition, while many tasks run at once.

Tasks of one partition finish out of order. Committing offset N tells Kafka "everything below N
is done", so the commit may only advance over a contiguous prefix of finished offsets: the
lowest offset still running (or not yet started) bounds it. A crash then redoes at most the
tasks at or after that bound, never skips one.

Where fetching resumes when a member keeps a partition through a rebalance (`resume_at`): just
past the highest offset started here and not abandoned, so nothing started is fetched twice and
nothing above it is skipped (offsets are started in partition order, and an abandoned batch --
taken but never run, because a revocation came first -- is always the latest one).
"""

from __future__ import annotations

import heapq


class PartitionOffsets:
    """Offsets taken from one partition and not yet committed."""

    def __init__(self) -> None:
        self._running: set[int] = set()
        self._finished: list[int] = []  # min-heap of finished offsets above the commit point
        self.committable: int | None = None  # next offset to commit (Kafka's "next to read")

    def start(self, offset: int) -> None:
        if self.committable is None:
            self.committable = offset
        self._running.add(offset)

    def finish(self, offset: int) -> int | None:
        """Mark `offset` done. Returns the new committable position if it advanced, else None."""
        self._running.discard(offset)
        heapq.heappush(self._finished, offset)
        before = self.committable
        # Offsets need not be dense (compaction, transaction markers): the commit point moves
        # up to the lowest still-running offset, or past the last finished one if none runs.
        floor = min(self._running) if self._running else None
        while self._finished and (floor is None or self._finished[0] < floor):
            self.committable = heapq.heappop(self._finished) + 1
        return self.committable if self.committable != before else None

    def abandon(self, offsets: list[int] | set[int]) -> None:
        """Offsets taken but never run (a revocation came first): as if never started. They
        are the latest ones started, so the commit point, which never passed them, stands."""
        self._running.difference_update(offsets)

    @property
    def resume_at(self) -> int | None:
        """The next offset to fetch: past everything started here and not abandoned."""
        pending = max(self._running, default=None)
        if self._finished:
            top = max(self._finished)
            pending = top if pending is None else max(pending, top)
        if pending is None:
            return self.committable
        return max(pending + 1, self.committable or 0)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def running_offsets(self) -> set[int]:
        return set(self._running)
