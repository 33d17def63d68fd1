"""What the aggregator published, kept until its own sink agent reads it back
(streams/aggregator.py)."""

from __future__ import annotations

from adp.schemas.contracts import Trajectory


class PublishedTrajectories:
    """Trajectories this process published, by their exact record bytes, until its own sink
    agent reads those bytes back from adp.trajectories. A record that comes back is written
    from the Trajectory it was encoded from instead of being decoded again: the same values
    (decode(encode(t)) == t for a trajectory assembled from decoded step events: its JSON
    fields already made the round trip), so the same file bytes. Decoding was the largest part
    of the sink agent's work. Bounded: the oldest is forgotten first, and a record not found
    (another aggregator's, or forgotten) is decoded as before."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_value: dict[bytes, Trajectory] = {}

    def __len__(self) -> int:
        return len(self._by_value)

    def put(self, value: bytes, trajectory: Trajectory) -> None:
        self._by_value.pop(value, None)
        self._by_value[value] = trajectory
        while len(self._by_value) > self.limit:
            del self._by_value[next(iter(self._by_value))]

    def take(self, value: bytes | None) -> Trajectory | None:
        return self._by_value.pop(value, None) if value else None
