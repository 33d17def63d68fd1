"""An AIMD concurrency limit, shared by whoever gates work on an overloadable endpoint.

The LLM client lowers it on 429s and raises it on successes; the runtime worker gates how many
tasks run at once with it (gauge adp_runtime_concurrency_limit). It knows nothing of either.
"""

from __future__ import annotations

import asyncio
import collections


class AdaptiveLimit:
    """An AIMD concurrency limit: `async with limit:` (or acquire/release) gates work.

    On a 429 (`on_overload`) the limit is multiplied by `decrease`; each success (`on_success`)
    adds `increase / limit`, i.e. about +increase per window of `limit` successes, up to
    `maximum`. It never drops below `minimum` (>= 1), so work never stalls."""

    def __init__(
        self,
        initial: int = 4,
        maximum: int = 64,
        minimum: int = 1,
        increase: float = 1.0,
        decrease: float = 0.5,
    ) -> None:
        self.minimum = max(1, int(minimum))
        self.maximum = max(self.minimum, int(maximum))
        self._limit = float(min(max(initial, self.minimum), self.maximum))
        self.increase, self.decrease = increase, decrease
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def current(self) -> int:
        return max(self.minimum, int(self._limit))

    async def acquire(self) -> None:
        while self.in_flight >= self.current:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # we were handed a slot we will not use: pass it on
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._wake()

    def _wake(self) -> None:
        free = self.current - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def on_success(self) -> None:
        before = self.current
        self._limit = min(float(self.maximum), self._limit + self.increase / max(self._limit, 1.0))
        if self.current > before:
            self._wake()

    def on_overload(self) -> None:
        self._limit = max(float(self.minimum), self._limit * self.decrease)

    async def __aenter__(self) -> AdaptiveLimit:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimit(current={self.current}, in_flight={self.in_flight}, max={self.maximum})"
        )
