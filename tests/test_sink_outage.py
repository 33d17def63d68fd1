"""The aggregator's writer during a sink outage, as pure logic (tests/faults/test_sink_outages.py
has it on real parts): it retries an outage with a capped, jittered backoff until the batch is
written, reports it on /health and in the metrics, and lets a bug through at once."""

from __future__ import annotations

import errno
from collections.abc import Sequence

import pytest

from adp.connectors.sinks.base import BaseSink, SinkError
from adp.core import metrics
from adp.schemas.contracts import Trajectory
from adp.streams.aggregator import sink_outage
from adp.streams.aggregator.assembly import assemble
from adp.streams.aggregator.sink_outage import RETRY_CAP, RETRY_FIRST, SinkOutage, is_outage
from adp.streams.aggregator.writer import TrajectoryWriter
from tests.test_assembly import attempt_events


class FlakySink(BaseSink):
    """Fails its first writes with the given errors, then stores."""

    kind = "flaky"

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.stored: list[str] = []
        self.tries = 0

    async def write(self, trajectory: Trajectory) -> str:
        return (await self.write_batch([trajectory]))[0]

    async def write_batch(self, trajectories: Sequence[Trajectory]) -> list[str]:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.stored += [t.key for t in trajectories]
        return [t.key for t in trajectories]


def assemble_one(task_id: str) -> Trajectory:
    [trajectory], _ = assemble(attempt_events(task_id, n_steps=1))
    return trajectory


class NoArtifacts:
    async def fetch(self, _artifact: object) -> bytes:
        raise AssertionError("no artifacts here")


def outage_seconds() -> float:
    return metrics.SINK_OUTAGE_SECONDS.labels(FlakySink.kind)._value.get()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink_outage, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(sink_outage, "RETRY_CAP", 0.02)


async def test_an_outage_is_retried_until_the_batch_is_written(quick, caplog):
    full = OSError(errno.ENOSPC, "No space left on device")
    sink = FlakySink(full, SinkError("S3 put failed after 6 attempts"), full)
    health = metrics.Health("aggregator test")
    writer = TrajectoryWriter(sink, NoArtifacts(), {"trajectories_written": 0}, health, "app")
    before = outage_seconds()
    trajectory = assemble_one("outage-1")
    with caplog.at_level("INFO", logger="adp.streams.aggregator.sink_outage"):
        await writer.write([trajectory])
    assert sink.tries == 4 and sink.stored == [trajectory.key]
    assert writer.stats["trajectories_written"] == 1
    assert outage_seconds() > before
    assert metrics.SINK_UNAVAILABLE.labels(FlakySink.kind)._value.get() == 0
    ok, body = health.report()
    assert ok and body["status"] == "ok" and body["degraded"] == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said  # once when it starts, once when it ends: not per try
    assert "unavailable (OSError" in said[0] and "1 trajectory unacknowledged" in said[0]
    assert "is back after" in said[1] and "3 failed tries" in said[1]


async def test_a_bug_is_not_retried(quick):
    sink = FlakySink(KeyError("a bug"))
    writer = TrajectoryWriter(sink, NoArtifacts(), {}, metrics.Health("aggregator test"), "app")
    with pytest.raises(KeyError):
        await writer.write([assemble_one("outage-2")])
    assert sink.tries == 1 and not writer.outage.active


async def test_health_is_degraded_not_unhealthy_during_an_outage(quick, monkeypatch):
    health = metrics.Health("aggregator test", stale_after=0.0, busy=lambda: True)
    outage = SinkOutage(FlakySink())
    health.degraded.append(outage.reason)
    monkeypatch.setattr(sink_outage.asyncio, "sleep", _no_sleep)
    await outage.wait_after(OSError(errno.EROFS, "Read-only file system"), held=3)
    ok, body = health.report()
    assert ok and body["status"] == "degraded"  # no "no progress" while the outage explains it
    [why] = body["degraded"]
    assert "unavailable since" in why and "Read-only file system" in why and "3 traj" in why
    assert metrics.SINK_UNAVAILABLE.labels(FlakySink.kind)._value.get() == 1
    outage.over()
    ok, body = health.report()
    assert not ok and body["status"] == "unhealthy"  # stalled again, with nothing to explain it


async def _no_sleep(_seconds: float) -> None:
    return None


def test_backoff_doubles_from_the_first_wait_up_to_the_cap_with_jitter():
    outage = SinkOutage(FlakySink())
    for retries, base in [(1, RETRY_FIRST), (2, 2 * RETRY_FIRST), (3, 4 * RETRY_FIRST)]:
        outage.retries = retries
        waits = {outage.delay() for _ in range(50)}
        assert all(base / 2 <= w <= base for w in waits) and len(waits) > 1
    outage.retries = 40
    assert all(RETRY_CAP / 2 <= outage.delay() <= RETRY_CAP for _ in range(50))


def test_what_is_an_outage():
    assert is_outage(OSError(errno.ENOSPC, "No space left on device"))
    assert is_outage(PermissionError(errno.EACCES, "Permission denied"))
    assert is_outage(TimeoutError())
    assert is_outage(SinkError("S3 put of s3://b/k failed after 6 attempts"))
    assert not is_outage(KeyError("x")) and not is_outage(ValueError("bad artifact name"))
