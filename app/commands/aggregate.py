"""`adp aggregate`: check the destination, make the aggregator's topics and the changelog,
then run the Faust aggregator (streams/aggregator/faust_app.py) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import time

import click

from adp.app.commands.options import kafka_options
from adp.connectors.sinks.destinations import open_sink, sink_for
from adp.core.settings import Settings
from adp.streams.aggregator.assembly import DEFAULT_EXPIRE_AFTER, DEFAULT_FORGET_DONE_AFTER
from adp.streams.aggregator.faust_app import Aggregator
from adp.streams.aggregator.lifecycle import DEFAULT_APP_ID, AggregatorConfig, changelog_topic
from adp.streams.kafka import clients
from adp.streams.kafka.topics import DLQ, STEPS, TRAJECTORIES

log = logging.getLogger(__name__)


async def _check_destination(kind: str, destination: str) -> None:
    """Fail before starting when the destination cannot be written (a sink of its own: the
    aggregator's sink lives on Faust's event loop)."""
    await (await open_sink(destination, kind)).close()


async def _prepare(conf: Settings, replication: int | None, app_id: str) -> tuple[int, int]:
    """Make sure the aggregator's topics and the table's changelog exist; returns the
    replication factor to use and adp.steps' partition count, as the broker has it.

    The changelog has as many partitions as adp.steps (Faust's table is co-partitioned with
    the stream): created here, and grown here after `adp topics grow steps`. It is created
    before Faust starts: left to Faust, a loaded machine can see the table's first write verify
    partitions against a consumer whose metadata does not know the new topic yet
    (PartitionsMismatch "... has 0 partitions"), which crashes the agent."""
    from adp.streams.kafka.admin import (
        cluster_broker_ids,
        ensure_topics,
        grow_partitions,
        partition_counts,
    )
    from adp.streams.kafka.topics import TopicSpec, platform_topics

    if replication is None:
        replication = min(3, len(await cluster_broker_ids(conf)))
    # only the topics the aggregator uses: its principal may not even see the task topics
    specs = [
        s
        for s in platform_topics(
            min_insync_replicas=min(2, replication), max_message_bytes=conf.max_message_bytes
        )
        if s.name in (STEPS, TRAJECTORIES, DLQ)
    ]
    await ensure_topics(conf, replication=replication, specs=specs)
    changelog = changelog_topic(app_id)
    counts = await partition_counts(conf, [STEPS, changelog])
    steps = counts[STEPS]
    if changelog not in counts:
        durable = next(s for s in specs if s.name == STEPS).configs
        await ensure_topics(
            conf,
            replication=replication,
            specs=[
                TopicSpec(
                    changelog, steps, {**durable, "retention.ms": "-1", "cleanup.policy": "compact"}
                )
            ],
        )
    elif counts[changelog] < steps:
        log.warning(
            "%s grew to %d partitions: growing %s from %d to match",
            STEPS,
            steps,
            changelog,
            counts[changelog],
        )
        await grow_partitions(conf, {changelog: steps})
    elif counts[changelog] > steps:
        raise clients.KafkaClientError(
            f"{changelog} has {counts[changelog]} partitions but {STEPS} only {steps}: they "
            f"must be equal (was {STEPS} recreated? delete the changelog or use another "
            f"--app-id)"
        )
    return replication, steps


def _forget_done_after(_ctx: click.Context, _param: click.Parameter, value: float) -> float | None:
    if value < 0:
        raise click.BadParameter("must be positive, or 0 to keep done records forever")
    return value or None


forget_done_option = click.option(
    "--forget-done-after",
    type=float,
    default=DEFAULT_FORGET_DONE_AFTER,
    show_default=True,
    callback=_forget_done_after,
    help="seconds (event time) a finished task is remembered: a copy of it produced within "
    "this gives no second trajectory, one produced later runs and is written again; "
    "what the state holds besides the tasks in flight. 0: remember forever",
)


@click.command("aggregate")
@click.option(
    "--sink",
    "sink_kind",
    type=click.Choice(["file", "s3"]),
    default=None,
    help="where trajectories go [default: what --out names: s3 for s3://..., else file]",
)
@click.option(
    "--out",
    "out",
    default=None,
    help="a folder (default: $ADP_OUTPUT_DIR or output/trajectories) or s3://bucket/prefix",
)
@click.option(
    "--expire-after",
    type=float,
    default=DEFAULT_EXPIRE_AFTER,
    show_default=True,
    help="drop an attempt with no new event for this many seconds (event time)",
)
@forget_done_option
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="port of /metrics and /health [ADP_METRICS_PORT or 8001, next free]; 0: off",
)
@click.option(
    "--app-id",
    default=DEFAULT_APP_ID,
    show_default=True,
    help="Faust app id = consumer group; names the changelog topic",
)
@click.option(
    "--replication",
    type=int,
    default=None,
    help="replication of the changelog topic (default: min(3, brokers))",
)
@click.option(
    "--session-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="consumer session timeout (s): how long a dead aggregator holds partitions",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="after SIGTERM/SIGINT the process ends within this many seconds, even with "
    "the broker gone (uncommitted events are read again at the next start)",
)
@kafka_options
def aggregate_command(
    sink_kind: str | None,
    out: str | None,
    expire_after: float,
    forget_done_after: float | None,
    metrics_port: int | None,
    app_id: str,
    replication: int | None,
    session_timeout: float,
    drain_timeout: float,
    conf: Settings,
) -> None:
    """Assemble step events (adp.steps) into trajectories (adp.trajectories) and write them with
    a sink. Stops cleanly on SIGTERM/SIGINT; a restarted aggregator resumes from its table."""
    destination = out or (str(conf.output_dir) if sink_kind in (None, "file") else None)
    if destination is None:
        raise click.UsageError("--sink s3 needs --out s3://bucket/prefix")
    asyncio.run(_check_destination(sink_kind, destination))
    sink = sink_for(destination, sink_kind)
    started = time.monotonic()
    replication, step_partitions = asyncio.run(_prepare(conf, replication, app_id))
    log.info(
        "topics ready on %s in %.1fs (%s: %d partitions)",
        conf.describe(),
        time.monotonic() - started,
        STEPS,
        step_partitions,
    )
    Aggregator(
        AggregatorConfig(
            connection=conf,
            sink=sink,
            step_partitions=step_partitions,
            app_id=app_id,
            expire_after=expire_after,
            forget_done_after=forget_done_after,
            replication=replication,
            metrics_port=conf.metrics_port if metrics_port is None else metrics_port,
            session_timeout=session_timeout,
            drain_timeout=drain_timeout,
        )
    ).run()
