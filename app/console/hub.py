"""Fan-out of named updates to the pages that listen (Server-Sent Events).

Producers call `publish(name, data)`; each open page holds a `Subscription` (a bounded queue).
The hub remembers the latest value of each name, so a page that connects gets the current
state at once instead of waiting for the next change. A page too slow to keep up loses its
oldest queued updates, never blocks the producers: every update is a full state, so the next
one repairs what was dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

CLOSED = object()  # pushed to every subscription when the server stops


class Subscription:
    def __init__(
        self, hub: Hub, keep: Callable[[str, Any], bool] | None = None, size: int = 256
    ) -> None:
        self.hub, self.keep = hub, keep
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def offer(self, item: Any) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # drop the oldest; a later full state repairs it
                self.dropped += 1

    def close(self) -> None:
        self.hub.subscriptions.discard(self)

    async def get(self, timeout: float) -> Any:
        """The next item, or None after `timeout` seconds (time for a keep-alive)."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class Hub:
    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.subscriptions: set[Subscription] = set()

    def publish(self, name: str, data: Any, remember: bool = True) -> None:
        if remember:
            self.latest[name] = data
        for sub in list(self.subscriptions):
            if sub.keep is None or sub.keep(name, data):
                sub.offer((name, data))

    def subscribe(
        self, keep: Callable[[str, Any], bool] | None = None, replay: bool = True
    ) -> Subscription:
        sub = Subscription(self, keep)
        if replay:
            for name, data in self.latest.items():
                if keep is None or keep(name, data):
                    sub.offer((name, data))
        self.subscriptions.add(sub)
        return sub

    def close(self) -> None:
        for sub in list(self.subscriptions):
            sub.offer(CLOSED)
