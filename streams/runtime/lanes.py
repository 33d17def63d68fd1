"""Which priority lane the next free slot of a runtime takes its task from.

Pure decision, no broker: the runtime worker (streams/runtime/worker.py) asks `LaneScheduler.pick`
once per free slot, telling it which lanes have work waiting and which of those have a record
at hand to start now. Lanes are indexed highest first, as in topics.LANES.

The rule is strict priority with a guaranteed minimum share for the lanes below:
- every pick, each lane that has work waiting *below the highest waiting lane* earns
  `min_share` of a start as credit; a lane with nothing waiting loses its credit (no banking
  for later bursts);
- a lower lane whose credit reached one start is due: it takes the slot (the most owed first),
  and pays one start for it;
- otherwise the highest lane with a record at hand takes it.

So while higher lanes keep work coming, each lower lane with work still gets at least
`min_share` of the starts (exactly that share over time when it always has work); when the
higher lanes run dry the lower ones get every slot; `min_share` 0 is strict priority. With
three lanes a share above 1/3 would let the lower lanes together push the highest one out, so
it is capped there (1/3: every lane with work gets at least a third).

The share counts *starts*, not slot-seconds: a lane of long tasks holds its slots longer, but
it is never kept from starting.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_MIN_SHARE = 0.2
_EPSILON = 1e-9  # credits are sums of floats: 5 x 0.2 must count as one whole start


def check_min_share(value: float, lanes: int) -> float:
    """`value` if it is a usable minimum share for `lanes` lanes, else ValueError saying why."""
    most = 1 / lanes if lanes > 1 else 1.0
    if not 0 <= value <= most + _EPSILON:
        raise ValueError(
            f"min share must be between 0 and {most:.3g} with {lanes} lanes "
            f"(got {value:g}): above that the lower lanes would take every slot "
            f"from the highest"
        )
    return value


class LaneScheduler:
    """Strict lane priority with a minimum share per lower lane (see the module doc)."""

    def __init__(self, lanes: int, min_share: float = DEFAULT_MIN_SHARE):
        if lanes < 1:
            raise ValueError("at least one lane")
        self.lanes = lanes
        self.min_share = check_min_share(min_share, lanes)
        self.credit = [0.0] * lanes

    def pick(self, waiting: Sequence[bool], ready: Sequence[bool]) -> int | None:
        """The lane the next free slot takes from, or None when no lane has a record at hand.

        waiting[i]: lane i has work (at hand or still on the broker);
        ready[i]: lane i has a record at hand to start now (implies waiting)."""
        if len(waiting) != self.lanes or len(ready) != self.lanes:
            raise ValueError(f"expected {self.lanes} lanes")
        startable = [i for i in range(self.lanes) if ready[i]]
        if not startable:
            return None
        has_work = [bool(waiting[i] or ready[i]) for i in range(self.lanes)]
        top = has_work.index(True)
        for i in range(self.lanes):
            if not has_work[i] or i == top:
                self.credit[i] = 0.0
            else:
                self.credit[i] += self.min_share
                if not ready[i]:
                    # nothing at hand to start: it stays owed one start (due at its next
                    # pick), never a burst of them
                    self.credit[i] = min(self.credit[i], 1.0 - self.min_share)
        due = [i for i in startable if i != top and self.credit[i] >= 1.0 - _EPSILON]
        # the most owed first; on a tie the higher lane
        chosen = max(due, key=lambda i: (self.credit[i], -i)) if due else startable[0]
        self.credit[chosen] = max(0.0, self.credit[chosen] - 1.0)
        return chosen
