"""The aggregator's one path to its sink (file | S3): streams/aggregator.py's two agents use it.

- The assemble agent writes the trajectories it has just published, once adp.trajectories has
  acknowledged them and before the batch's state reaches the table (write-through). Waiting for
  its own records to come back through Faust's consumer put them behind the adp.steps backlog
  (10-20 s in bench b, a whole backlog before the fetch size was cut) and cost a second decode
  of every trajectory when they did.
- The sink agent writes every other record of adp.trajectories (another aggregator's, adp
  verify's re-judged ones) and skips the ones this process published, known by a digest of
  their bytes, noted before they were sent.
Nothing is lost when the process dies between publishing and writing: the batch's step events
are then not acknowledged and its state is not in the table, so the restarted aggregator
assembles and publishes the same bytes again, remembers nothing, and writes them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

from adp.connectors.sinks.base import BaseSink
from adp.core import metrics
from adp.schemas.contracts import Trajectory
from adp.streams.artifacts import ArtifactFetcher

log = logging.getLogger(__name__)

# Digests of records published here that the sink agent has not read back yet (16 bytes each,
# about 100 B with the dict entry): the oldest is forgotten first, and a forgotten record is
# decoded and written once more (the same bytes) when it comes.
PUBLISHED_KEPT = 200_000


def digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


class TrajectoryWriter:
    def __init__(self, sink: BaseSink, artifacts: ArtifactFetcher, stats: dict[str, int],
                 health: metrics.Health, kept: int = PUBLISHED_KEPT) -> None:
        self.sink = sink
        self.artifacts = artifacts
        self.stats = stats
        self.health = health
        self.kept = kept
        self._published: dict[bytes, None] = {}

    def published(self, value: bytes) -> None:
        """Note a record this process is about to publish (and will write itself)."""
        self._published[digest(value)] = None
        while len(self._published) > self.kept:
            del self._published[next(iter(self._published))]

    def published_here(self, value: bytes) -> bool:
        """For the sink agent: whether a record it read is one this process published (then
        it was written by the assemble agent); each is answered yes once."""
        key = digest(value)
        if key not in self._published:
            return False
        del self._published[key]
        return True

    async def write(self, trajectories: Sequence[Trajectory]) -> None:
        """Store every trajectory (the files its steps wrote first) and flush the sink: when
        this returns, all of them are stored."""
        if not trajectories:
            return
        for trajectory in trajectories:
            await self.artifacts.store(self.sink, trajectory)
        where = await self.sink.write_batch(trajectories)
        await self.sink.flush()
        now = time.time()
        self.stats["trajectories_written"] += len(trajectories)
        self.health.progress()
        for trajectory, place in zip(trajectories, where):
            metrics.SINK_LATENCY.labels(self.sink.kind).observe(
                max(0.0, now - trajectory.metadata.finished_at))
            log.debug("trajectory %s written: %d steps, success=%s (%s), attempt %s -> %s",
                      trajectory.key, len(trajectory.steps), trajectory.success,
                      trajectory.verdict_status, trajectory.metadata.attempt_id, place)
        log.info("%d trajector%s written (%s%s)", len(trajectories),
                 "y" if len(trajectories) == 1 else "ies",
                 ", ".join(t.key for t in trajectories[:3]),
                 ", ..." if len(trajectories) > 3 else "")
