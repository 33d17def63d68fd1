"""`adp console`: the web console, from the command line."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings
from adp.streams.kafka import topics

if TYPE_CHECKING:
    from adp.app.console.server import ConsoleConfig


@click.command("console")
@click.option(
    "--port",
    default=8050,
    show_default=True,
    help="Port of the web page (0: any free port, printed at start).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The console has no login: keep it on 127.0.0.1 and "
    "reach it from elsewhere through an SSH tunnel (ssh -L 8050:127.0.0.1:8050 "
    "host), unless everyone on the network may read every trajectory.",
)
@click.option(
    "--trajectories",
    "location",
    metavar="DIR|s3://BUCKET/PREFIX",
    default=None,
    help="Where the sink writes trajectories [ADP_OUTPUT_DIR, default "
    "output/trajectories]. S3 reads take credentials and ADP_S3_ENDPOINT_URL "
    "as the S3 sink does.",
)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    help="Seconds between two reads of the counters and lags.",
)
@click.option(
    "--aggregator-group",
    default=topics.AGGREGATOR_GROUP,
    show_default=True,
    help="The aggregator's consumer group (its --app-id), for its lag on adp.steps.",
)
@kafka_options
def console_command(
    port: int,
    host: str,
    location: str | None,
    interval: float,
    aggregator_group: str,
    conf: Settings,
) -> None:
    """A web page that shows the platform at work, updated live:

    \b
    - Overview: per task type produced, pending, running, finished, failed (and verified where
      trajectories carry a verdict); each consumer group's members and lag per partition;
      events per second over the last ten minutes.
    - Live steps: step events as runtimes emit them, with the filters of `adp tail` (type,
      task, runtime, failed only); pausable.
    - Trajectories: the stored trajectories (a folder or S3), searchable and filterable, each
      readable step by step: thinking, action, observation, errors, tokens, latency and the
      raw LLM exchange.
    - Dead letters: what went to adp.dlq and why.

    It reads Kafka without joining any consumer group (it never disturbs the runtimes or the
    aggregator), and keeps running when the broker goes away: the page says so and catches up
    when it is back. Every asset is in the package: it works without internet access.
    Ctrl-C stops it.
    """
    from adp.app.console.server import ConsoleConfig

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # unless -vv
        # With the broker gone aiokafka logs an error per retry, several a second; the console
        # says it once ("Kafka at ... unreachable", and on the page) and again when it is back.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config = ConsoleConfig(
        bootstrap=conf,
        trajectories=_trajectories_at(location, conf),
        home=conf.home,
        host=host,
        port=port,
        interval=interval,
        aggregator_group=aggregator_group,
    )
    asyncio.run(_serve(config, conf))


def _trajectories_at(location: str | None, conf: Settings) -> str:
    """`--trajectories` or the sink's folder, a local path made absolute (S3 as given)."""
    where = location or str(conf.output_dir)
    if where.startswith("s3://"):
        return where
    return str(Path(where).expanduser().resolve())


async def _serve(config: ConsoleConfig, conf: Settings) -> None:
    """Run the console until SIGINT or SIGTERM."""
    from adp.app.console.server import Console

    console = Console(config)
    try:
        await console.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    shown = f"[{config.host}]" if ":" in config.host else config.host
    click.echo(
        f"adp console on http://{shown}:{console.port}/ (Kafka {conf.describe()}, "
        f"trajectories {config.trajectories}); Ctrl-C stops",
        err=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await console.close()
