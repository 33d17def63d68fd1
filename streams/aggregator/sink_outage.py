"""What the aggregator does while its sink cannot be written: an outage (a full disk, a read-only
folder, S3 refusing or timing out), not a failure.

The batch being written stays unacknowledged: its step events (or adp.trajectories records) are
not acked and its state has not reached the table (streams/aggregator/faust_app.py), so nothing
is lost whatever happens next. The same batch is tried again after an exponential backoff with
jitter (RETRY_FIRST doubling up to RETRY_CAP seconds, each wait scaled by a random factor in
[0.5, 1] so several aggregators do not hit a recovering sink at once) until it is written whole;
sinks make that safe (a file or object per trajectory, written atomically, same name and bytes
again). Meanwhile /health says "degraded" and why (still 200: a restart would not help),
adp_sink_unavailable{sink} is 1 and adp_sink_outage_seconds_total{sink} grows; the log says it
once when the outage starts and once when it ends.

Waiting inside the agent is what Faust copes with best: its fetcher keeps polling while the
agent's buffer is full (flow control pauses the partitions, so memory stays bounded by
stream_buffer_maxsize and max.poll.interval is never exceeded), heartbeats keep the group
membership, and the periodic commit never passes an unacked event. Past
broker_commit_livelock_soft_timeout (300 s) Faust logs that nothing was committed; that is this.

Only errors that say the destination cannot be written are an outage (`is_outage`); anything
else is a bug and still crashes the agent (faust_guard.exit_on_crash), so a supervisor
restarts the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from adp.connectors.sinks.base import SinkError
from adp.core import metrics

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0  # seconds before the first retry of a failed write
RETRY_CAP = 30.0  # the longest wait between two tries (so the sink's return is seen this soon)


def is_outage(exc: BaseException) -> bool:
    """Whether a failed write says the destination cannot be written now (retry it) rather
    than that the code is wrong. SinkError: the S3 sink's final failure (refused, timed out,
    throttled, denied); OSError: the file sink's (no space, read-only, permission denied, I/O
    error, quota; TimeoutError is one too)."""
    return isinstance(exc, (SinkError, OSError))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SinkOutage:
    """The outage state of one sink, shared by the agents that write with it; `reason` is a
    /health degraded check (metrics.Health.degraded)."""

    def __init__(self, sink: object) -> None:
        self.sink = sink
        self.kind = getattr(sink, "kind", "sink")  # the metrics' label
        self.since: float | None = None  # monotonic start of the current outage
        self.retries = 0  # failed tries in the current outage
        self.held = 0  # trajectories waiting for the sink
        self.error = ""  # the latest failure
        self._began = 0.0  # wall-clock start, for /health
        self._counted = 0.0  # monotonic time up to which its seconds are counted
        metrics.SINK_UNAVAILABLE.labels(self.kind).set(0)

    @property
    def active(self) -> bool:
        return self.since is not None

    def delay(self) -> float:
        """The wait before the next try: exponential from RETRY_FIRST, capped, jittered."""
        return min(RETRY_CAP, RETRY_FIRST * 2 ** max(0, self.retries - 1)) * random.uniform(0.5, 1)

    async def wait_after(self, exc: BaseException, held: int) -> None:
        """After a failed write of `held` trajectories: report the outage (the log once, when
        it starts), then wait before the next try."""
        now = time.monotonic()
        self.retries += 1
        self.held, self.error = held, describe(exc)
        if self.since is None:
            self.since = self._counted = now
            self._began = time.time()
            metrics.SINK_UNAVAILABLE.labels(self.kind).set(1)
            log.warning(
                "sink %r unavailable (%s): holding %d trajector%s unacknowledged and "
                "retrying (backoff %.0f-%.0fs); nothing is lost",
                self.sink,
                describe(exc),
                held,
                "y" if held == 1 else "ies",
                RETRY_FIRST,
                RETRY_CAP,
            )
        else:
            log.debug("sink %r still unavailable: %s", self.sink, describe(exc))
        self._count(now)
        await asyncio.sleep(self.delay())
        self._count(time.monotonic())

    def over(self) -> None:
        """A write succeeded: end the outage, if there was one (the log says so once)."""
        if self.since is None:
            return
        now = time.monotonic()
        self._count(now)
        log.info(
            "sink %r is back after %.0fs (%d failed tr%s): writing resumes",
            self.sink,
            now - self.since,
            self.retries,
            "y" if self.retries == 1 else "ies",
        )
        self.since, self.retries, self.held = None, 0, 0
        metrics.SINK_UNAVAILABLE.labels(self.kind).set(0)

    def reason(self) -> str | None:
        """Why the aggregator is degraded (None: it is not): for /health."""
        if self.since is None:
            return None
        began = time.strftime("%H:%M:%S", time.localtime(self._began))
        return (
            f"sink {self.sink!r} unavailable since {began} "
            f"({time.monotonic() - self.since:.0f}s): {self.error}; {self.held} trajectories held"
        )

    def _count(self, now: float) -> None:
        if self.since is not None and now > self._counted:
            metrics.SINK_OUTAGE_SECONDS.labels(self.kind).inc(now - self._counted)
            self._counted = now
