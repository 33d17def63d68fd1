"""The aggregator's one path to its sink (file | S3): streams/aggregator/faust_app.py's two agents
use it.

- The assemble agent writes the trajectories it has just published, once adp.trajectories has
  acknowledged them and before the batch's state reaches the table (write-through). Waiting for
  its own records to come back through Faust's consumer put them behind the adp.steps backlog
  (10-20 s in bench b, a whole backlog before the fetch size was cut) and cost a second decode
  of every trajectory when they did.
- Each record it publishes carries the header adp-written-by: <app id>. The sink agent writes
  every record of adp.trajectories without its own app id there (adp verify's re-judged ones,
  another app's, older records) and skips the others: an aggregator of the same app (same
  group, same sink) wrote them, whichever process of the app owns their partition.
Nothing is lost when a process dies between publishing and writing: the batch's step events are
then not acknowledged and its state is not in the table, so whichever process of the app takes
the partition over assembles, publishes and writes the same bytes again. For the same reason a
sink that cannot be written (a full disk, S3 down) only pauses the agent: `write` tries the
batch again until it is stored (streams/aggregator/sink_outage.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from adp.connectors.sinks.base import BaseSink
from adp.core import metrics
from adp.schemas.contracts import Trajectory
from adp.streams.aggregator.sink_outage import SinkOutage, is_outage
from adp.streams.kafka.artifacts import ArtifactFetcher

log = logging.getLogger(__name__)

WRITTEN_BY = "adp-written-by"  # record header: the app id of the aggregator that wrote it


def written_by(headers: object) -> str | None:
    """The app id a record's adp-written-by header names (None without one)."""
    for name, value in headers or ():
        if name == WRITTEN_BY and value is not None:
            return bytes(value).decode("utf-8", "replace")
    return None


class TrajectoryWriter:
    def __init__(
        self,
        sink: BaseSink,
        artifacts: ArtifactFetcher,
        stats: dict[str, int],
        health: metrics.Health,
        app_id: str,
    ) -> None:
        self.sink = sink
        self.artifacts = artifacts
        self.stats = stats
        self.health = health
        self.app_id = app_id
        # the headers of every trajectory the assemble agent publishes (and then writes)
        self.headers = [(WRITTEN_BY, app_id.encode())]
        self.outage = SinkOutage(sink)
        if health is not None:
            health.degraded.append(self.outage.reason)

    def written_by_app(self, headers: object) -> bool:
        """For the sink agent: whether an aggregator of this app wrote the record already."""
        return written_by(headers) == self.app_id

    async def write(self, trajectories: Sequence[Trajectory]) -> None:
        """Store every trajectory (the files its steps wrote first) and flush the sink: when
        this returns, all of them are stored. While the sink is unavailable it keeps trying
        (the caller's batch stays unacknowledged meanwhile); any other error is raised."""
        if not trajectories:
            return
        while True:
            try:
                where = await self.sink.store(trajectories, self.artifacts.fetch)
                await self.sink.flush()
                break
            except Exception as exc:
                if not is_outage(exc):
                    raise
                await self.outage.wait_after(exc, len(trajectories))
        self.outage.over()
        now = time.time()
        self.stats["trajectories_written"] += len(trajectories)
        self.health.progress()
        for trajectory, place in zip(trajectories, where):
            metrics.SINK_LATENCY.labels(self.sink.kind).observe(
                max(0.0, now - trajectory.metadata.finished_at)
            )
            log.debug(
                "trajectory %s written: %d steps, success=%s (%s), attempt %s -> %s",
                trajectory.key,
                len(trajectory.steps),
                trajectory.success,
                trajectory.verdict_status,
                trajectory.metadata.attempt_id,
                place,
            )
        log.info(
            "%d trajector%s written (%s%s)",
            len(trajectories),
            "y" if len(trajectories) == 1 else "ies",
            ", ".join(t.key for t in trajectories[:3]),
            ", ..." if len(trajectories) > 3 else "",
        )
