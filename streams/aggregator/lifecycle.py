"""The aggregator's Faust app, made and run: its settings (what Faust is told about the
cluster, the producer and the consumer, and why), and the process around it (mode's Worker,
SIGTERM/SIGINT, the shutdown insurance when the broker is gone, the exit status).
faust_app.py holds what the app does."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adp.connectors.sinks.base import BaseSink
from adp.core.process import exit_if_stuck, relax_gc
from adp.core.settings import Settings
from adp.streams.aggregator.assembly import DEFAULT_EXPIRE_AFTER, DEFAULT_FORGET_DONE_AFTER
from adp.streams.kafka import clients
from adp.streams.kafka.topics import AGGREGATOR_GROUP

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

DEFAULT_APP_ID = AGGREGATOR_GROUP
TABLE_NAME = "assembly"
PRODUCER_BATCH_BYTES = 1024 * 1024  # records per partition sent in one go (uncompressed)


@dataclass
class AggregatorConfig:
    connection: Settings  # the cluster and how to reach it (streams/kafka/clients.py)
    sink: BaseSink
    step_partitions: int  # adp.steps' partitions on the broker (= the changelog's): _prepare
    app_id: str = DEFAULT_APP_ID
    expire_after: float = DEFAULT_EXPIRE_AFTER
    forget_done_after: float | None = DEFAULT_FORGET_DONE_AFTER  # None: keep done records
    replication: int = 1
    metrics_port: int | None = None
    log_every: float = 30.0
    session_timeout: float = 30.0
    datadir: Path | None = None
    drain_timeout: float = 30.0  # after SIGTERM, the process ends within this even without a broker


class Runnable(Protocol):
    """What run_until_stopped needs of an aggregator (faust_app.Aggregator)."""

    app: Any
    config: AggregatorConfig
    writer: Any  # its `outage.active` says whether the sink is down

    def counters(self) -> dict[str, int]: ...


def changelog_topic(app_id: str) -> str:
    """The Faust table's changelog topic (Faust names it <app_id>-<table>-changelog)."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def build_app(config: AggregatorConfig) -> faust.App:
    """The Faust app of one aggregator configuration (no agents yet)."""
    import faust  # heavy import: only when the aggregator really runs

    datadir = config.datadir or config.connection.home / "aggregator"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        config.app_id,
        **clients.faust_settings(config.connection),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=config.step_partitions,
        topic_replication_factor=config.replication,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        producer_compression_type="gzip",
        producer_linger_ms=5,
        # One produce request carries one batch per partition: with the 16 KiB default a
        # 20 KB trajectory was a request of its own, and a batch's trajectories and
        # changelog records waited for dozens of acks=all round trips in a row.
        producer_max_batch_size=min(PRODUCER_BATCH_BYTES, config.connection.max_message_bytes),
        consumer_auto_offset_reset="earliest",
        # A kill -9'd member holds its partitions until its session times out.
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=min(3.0, config.session_timeout / 3),
    )


def run_until_stopped(aggregator: Runnable) -> None:
    """Run until SIGTERM/SIGINT; mode's Worker stops the app cleanly on either. A crashed
    agent ends the process at once with AGENT_CRASH_EXIT (faust_guard.exit_on_crash)."""
    from faust import Worker

    if log.isEnabledFor(logging.DEBUG):  # -v: also Faust's own story (rebalances, recovery)
        logging.getLogger("faust").setLevel(logging.INFO)
    worker = Worker(
        aggregator.app,
        loglevel="WARNING",
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.spinner = None  # it writes terminal escapes to stdout
    # mode's Worker owns SIGTERM/SIGINT: arm the shutdown insurance when it acts on one
    # (Faust can keep waiting for a broker that is gone; core/process.exit_if_stuck)
    schedule, armed = worker._schedule_shutdown, []

    def shutdown(signal: Any) -> None:
        if aggregator.writer.outage.active:
            log.warning(
                "stopping while the sink is unavailable: the trajectories not written yet "
                "keep their events unacknowledged and are written after the next start"
            )
        if not armed:
            armed.append(
                exit_if_stuck(
                    aggregator.config.drain_timeout, f"aggregator {aggregator.config.app_id}"
                )
            )
        schedule(signal)

    worker._schedule_shutdown = shutdown
    relax_gc()
    code: Any = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
    log.info(
        "aggregator stopped (%s)", " ".join(f"{k}={v}" for k, v in aggregator.counters().items())
    )
    if code not in (0, None):
        raise SystemExit(code)
