"""Where a group stream stands on one partition of adp.trajectories, and how that is committed.

A group's samples are records on several partitions, and groups complete in another order than
their records were written, so no single offset per partition says "everything before was
delivered". What is committed per partition is three things:

- the offset: the first record still held (its group not yet acknowledged), or, with none
  held, where reading goes on -- Kafka's own committed offset, so lag and `adp status` read it;
- read_to: every record below it was read;
- held: the records in [offset, read_to) whose groups were not acknowledged,
as the commit's metadata (`encode`: "adp-groups/1;<read_to - offset>;<held as deltas>", base
36). A restarted stream seeks to the offset and skips every record below read_to that is not
held: those belonged to groups already delivered and acknowledged, or to nothing a trainer
wants (dropped by a filter, undecodable). The held ones come back, and with them every group
not acknowledged, whole. One OffsetCommit request carries every partition's offset and
metadata, which the group coordinator appends to __consumer_offsets as one batch, so the
partitions never disagree about which groups were delivered.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

PREFIX = "adp-groups/1"
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def b36(n: int) -> str:
    if n < 0:
        raise ValueError(f"negative offset delta {n}")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = DIGITS[r] + out
        if not n:
            return out


@dataclass(frozen=True)
class Checkpoint:
    offset: int
    read_to: int
    held: tuple[int, ...] = ()

    def encode(self) -> str:
        deltas, last = [], self.offset
        for o in self.held:
            deltas.append(b36(o - last))
            last = o
        return f"{PREFIX};{b36(self.read_to - self.offset)};{','.join(deltas)}"

    @classmethod
    def decode(cls, offset: int, metadata: str) -> Checkpoint:
        """The checkpoint committed as (offset, metadata); a commit without our metadata (a
        fresh group, or one another tool committed) is just its offset."""
        parts = (metadata or "").split(";")
        if len(parts) != 3 or parts[0] != PREFIX:
            return cls(offset, offset)
        try:
            read_to = offset + int(parts[1], 36)
            held, last = [], offset
            for d in filter(None, parts[2].split(",")):
                last += int(d, 36)
                held.append(last)
        except ValueError:
            return cls(offset, offset)
        return cls(offset, read_to, tuple(held))


@dataclass
class PartitionLedger:
    """The records of one partition a stream has read: which are held by a group not yet
    acknowledged. Starts where a checkpoint left off."""

    start: Checkpoint
    position: int = field(init=False)  # the next offset to read
    held: list[int] = field(default_factory=list)  # sorted offsets, read and held
    _skip_below: int = field(init=False)
    _keep: set[int] = field(init=False)  # held when committed, not read again yet

    def __post_init__(self) -> None:
        self.position = self.start.offset
        self._skip_below = self.start.read_to
        self._keep = set(self.start.held)

    def delivered_before(self, offset: int) -> bool:
        """Was this record dealt with before the checkpoint (skip it)?"""
        return offset < self._skip_below and offset not in self._keep

    def read(self, offset: int, hold: bool) -> None:
        self.position = max(self.position, offset + 1)
        self._keep.discard(offset)
        if hold:
            bisect.insort(self.held, offset)

    def release(self, offset: int) -> None:
        i = bisect.bisect_left(self.held, offset)
        if i < len(self.held) and self.held[i] == offset:
            del self.held[i]

    def checkpoint(self) -> Checkpoint:
        waiting = sorted({*self.held, *(o for o in self._keep if o >= self.position)})
        offset = waiting[0] if waiting else self.position
        return Checkpoint(offset, max(self.position, self._skip_below), tuple(waiting))
