"""The outage breaker of a runtime process: a dependency that is down pauses the runtime, it
does not fail the tasks.

A DependencyOutage (core/errors.py: every configured LLM provider unreachable, refusing or
overloaded past its retries; the sandbox backend or the browser failing to start) says nothing
about the agent, so it must not become a failed trajectory. One breaker per runtime process,
shared by its slots:
- the first outage opens it ("paused"): the worker starts no new task while it is open (fetched
  records wait, uncommitted), and the attempt that met the outage is abandoned without a
  finished event (the aggregator drops it once a later attempt of the task completes);
- it waits with exponential backoff and jitter (`backoff_min` doubling up to `backoff_max`),
  then asks the outage's probe whether the dependency answers again (without a probe, the next
  attempt is the probe), and closes when it does: the waiting tasks run again from the start,
  under new attempts. The backoff grows with every failed probe and every outage met again
  right after a resume, and starts over once an attempt ends without one;
- a task is given up only after it has waited `budget` seconds in all: its last attempt then
  finishes as an `infrastructure` failure (exports leave those out by default). The breaker
  stays open meanwhile, so the backlog is not burnt.

It says so once per change of state in the log, and all along in /health (`degraded`), in
the commit metadata `adp status` reads (`note`), in adp_runtime_paused and in
adp_runtime_outage_seconds_total."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from adp.core import metrics
from adp.core.errors import DependencyOutage
from adp.core.settings import settings
from adp.runtimes.base import Outcome, Runtime
from adp.schemas.contracts import ErrorType

log = logging.getLogger(__name__)

ACCOUNT_EVERY = 5.0  # seconds: how fresh the outage-seconds counter is while paused
NOTE_LIMIT = 160  # characters of the reason carried in commit metadata


class Abandonable(Protocol):
    """What the breaker needs of an attempt (streams/runtime/attempt.py)."""

    async def run(self, runtime: Runtime, on_sent: Callable[[], None] | None = None) -> Outcome: ...

    async def finish(
        self, outcome: Outcome, on_sent: Callable[[], None] | None = None
    ) -> Outcome: ...


A = TypeVar("A", bound=Abandonable)


class OutageBreaker:
    """Paused or not, why, since when, and the waiting tasks (see the module doc)."""

    def __init__(
        self,
        task_type: str,
        budget: float,
        backoff_min: float = 5.0,
        backoff_max: float = 300.0,
        probe_timeout: float = 90.0,
        runtime_id: str = "",
    ) -> None:
        self.task_type, self.budget = task_type, max(0.0, budget)
        self.runtime_id = runtime_id
        self.backoff_min, self.backoff_max = backoff_min, max(backoff_min, backoff_max)
        self.probe_timeout = probe_timeout
        self.on_change: list[Callable[[], None]] = []  # called when it pauses or resumes
        self.since: float | None = None  # wall clock, while paused
        self.reason = ""
        self.dependency = ""
        self.waiting = 0  # tasks waiting for the resume
        self._level = 0  # backoff exponent
        self._closed = asyncio.Event()
        self._closed.set()
        self._probe: Callable[[], Awaitable[object]] | None = None
        self._prober: asyncio.Task | None = None
        self._accounted = 0.0

    @classmethod
    def from_settings(
        cls, task_type: str, runtime_id: str = "", budget: float | None = None
    ) -> OutageBreaker:
        conf = settings().runtime
        return cls(
            task_type,
            conf.max_outage if budget is None else budget,
            conf.outage_backoff_min,
            conf.outage_backoff_max,
            runtime_id=runtime_id,
        )

    @property
    def paused(self) -> bool:
        return not self._closed.is_set()

    # ---- one task through outages ------------------------------------------------------------

    async def run(
        self, new_attempt: Callable[[], A], runtime: Runtime, on_sent: Callable[[], None]
    ) -> tuple[A, Outcome]:
        """Run the task as attempts from `new_attempt` until one ends without an outage, or
        the task has waited out the budget: then its last attempt finishes as infrastructure."""
        waited = 0.0
        while True:
            attempt = new_attempt()
            try:
                outcome = await attempt.run(runtime, on_sent=on_sent)
            except DependencyOutage as outage:
                self.trip(outage)
                began = time.monotonic()
                resumed = await self._resumed_within(self.budget - waited)
                waited += time.monotonic() - began
                if resumed:
                    continue
                outcome = Outcome(
                    False,
                    "",
                    f"{outage} (paused {waited:.0f}s in all, over the outage budget of "
                    f"{self.budget:g}s)",
                    ErrorType.infrastructure,
                )
                return attempt, await attempt.finish(outcome, on_sent)
            self._level = 0
            return attempt, outcome

    async def _resumed_within(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(seconds):
                await self._closed.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    # ---- the state ---------------------------------------------------------------------------

    def trip(self, outage: DependencyOutage) -> None:
        """Pause (if not paused yet) on this outage; the newest outage's probe and reason win."""
        self._probe, self.dependency, self.reason = outage.probe, outage.dependency, str(outage)
        if self.paused:
            return
        self._closed.clear()
        self.since, self._accounted = time.time(), time.monotonic()
        metrics.RUNTIME_PAUSED.labels(self.task_type).set(1)
        log.warning(
            "runtime paused, no new task starts: %s (%s down; probing from %gs, backing off to "
            "%gs; a task is given up after %gs paused)",
            self.reason,
            self.dependency,
            self.backoff_min,
            self.backoff_max,
            self.budget,
        )
        self._prober = asyncio.create_task(self._until_up(), name="outage-probe")
        self._changed()

    async def _until_up(self) -> None:
        while True:
            await self._sleep(self.delay(self._level))
            self._level += 1
            if await self._answers():
                break
        self._account()
        paused_for = time.time() - (self.since or time.time())
        self._closed.set()
        self.since = None
        metrics.RUNTIME_PAUSED.labels(self.task_type).set(0)
        log.info(
            "runtime resumed after %.0fs paused (%s answers again); %d waiting task(s) run again",
            paused_for,
            self.dependency,
            self.waiting,
        )
        self._changed()

    async def _answers(self) -> bool:
        if self._probe is None:  # the next attempt is the probe
            return True
        try:
            async with asyncio.timeout(self.probe_timeout):
                await self._probe()
            return True
        except DependencyOutage as exc:
            self.reason = str(exc)
        except TimeoutError:
            self.reason = f"the {self.dependency} probe had no answer in {self.probe_timeout:g}s"
        except Exception as exc:  # a probe that breaks is a dependency that does not answer
            self.reason = f"the {self.dependency} probe failed: {type(exc).__name__}: {exc}"
        log.debug("still paused: %s", self.reason)
        return False

    def delay(self, level: int) -> float:
        """Exponential backoff with jitter: between half and all of min * 2**level, capped."""
        ceiling = min(self.backoff_max, self.backoff_min * 2 ** min(level, 32))
        return random.uniform(ceiling / 2, ceiling)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, counting outage seconds as they pass (not only at the resume)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, ACCOUNT_EVERY))
            self._account()

    def _account(self) -> None:
        now = time.monotonic()
        metrics.RUNTIME_OUTAGE_SECONDS.labels(self.task_type, self.dependency).inc(
            max(0.0, now - self._accounted)
        )
        self._accounted = now

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()

    # ---- what others read --------------------------------------------------------------------

    def degraded(self) -> str | None:
        """For /health: why and since when the runtime is paused, or None."""
        if self.since is None:
            return None
        at = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        return (
            f"paused since {at} ({time.time() - self.since:.0f}s): {self.reason}; "
            f"{self.waiting} task(s) waiting"
        )

    def note(self) -> dict[str, object] | None:
        """For the commit metadata (`adp status`): who, since when and why, or None."""
        if self.since is None:
            return None
        return {
            "by": self.runtime_id,
            "since": round(self.since, 3),
            "why": self.reason[:NOTE_LIMIT],
        }
