"""Poison tasks: a task that kills its runtime process, again and again, must not stall its
partition forever.

The evidence has to outlive the process it kills, so it travels in the metadata of the
partition's committed offset (Kafka keeps it with the commit, readable by whichever member owns
the partition next): the offsets that were running at the last commit, and how many times each
offset has already been running when its process died ("strikes").

- A member commits the running offsets *before* it starts them.
- A clean stop or rebalance commits with nothing running: cancelling is not a strike.
- A new owner that finds running offsets in the metadata knows their process died with them:
  each gets a strike. A task with strikes runs alone ("quarantine"), so tasks that merely shared
  a process with it collect no more strikes; at `limit` strikes it goes to adp.dlq instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

MAX_METADATA = 3000  # Kafka's offset.metadata.max.bytes defaults to 4096


class PoisonLedger:
    """Strikes of one partition, and the metadata string that carries them."""

    def __init__(self, strikes: dict[int, int] | None = None):
        self.strikes: dict[int, int] = dict(strikes or {})

    @classmethod
    def from_metadata(cls, metadata: str | None, committed: int | None) -> PoisonLedger:
        """Read a commit's metadata; offsets that were running then get a strike now."""
        try:
            data = json.loads(metadata) if metadata else {}
            running = [int(o) for o in data.get("run", [])]
            strikes = {int(k): int(v) for k, v in data.get("strikes", {}).items()}
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring unreadable commit metadata %r", (metadata or "")[:200])
            return cls()
        if data.get("paused"):
            # the owner was paused by an outage (streams/runtime/breaker.py): its tasks were
            # waiting for the dependency, not running, and a process restarted while paused
            # (an operator's, most likely) must not dead-letter them as poison
            running = []
        for offset in running:
            if committed is None or offset >= committed:
                strikes[offset] = strikes.get(offset, 0) + 1
        return cls(strikes)

    def metadata(
        self, running: list[int] | set[int], committed: int | None, paused: dict | None = None
    ) -> str:
        """`paused`: the runtime's outage note (streams/runtime/breaker.py), which `adp status`
        shows; a process that dies paused leaves it behind, so it names the runtime."""
        live = {o: n for o, n in self.strikes.items() if committed is None or o >= committed}
        self.strikes = live
        data: dict = {"run": sorted(running), "strikes": live}
        if paused:
            data["paused"] = paused
        text = json.dumps(data, separators=(",", ":"))
        if len(text) > MAX_METADATA:  # never fail a commit over bookkeeping
            log.warning("commit metadata too large (%d bytes); poison tracking reset", len(text))
            text = json.dumps({"run": [], "strikes": {}})
        return text

    def of(self, offset: int) -> int:
        return self.strikes.get(offset, 0)

    def clear(self, offset: int) -> None:
        self.strikes.pop(offset, None)


class Quarantine:
    """Where a runtime's tasks execute: ordinary tasks side by side; a suspect (a task with
    strikes) waits until nothing else executes and runs alone, so only a real poison task
    collects more strikes. The worker starts no new task while the quarantine is closed."""

    def __init__(self) -> None:
        self._open = asyncio.Event()  # cleared while a suspect waits or runs
        self._open.set()
        self._executing = 0
        self._idle = asyncio.Condition()
        self._lock = asyncio.Lock()  # one suspect at a time

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @asynccontextmanager
    async def slot(self, suspect: bool) -> AsyncIterator[None]:
        if suspect:
            await self._lock.acquire()
            self._open.clear()
            async with self._idle:
                await self._idle.wait_for(lambda: self._executing == 0)
        else:
            await self._open.wait()
        self._executing += 1
        try:
            yield
        finally:
            self._executing -= 1
            async with self._idle:
                self._idle.notify_all()
            if suspect:
                self._open.set()
                self._lock.release()
