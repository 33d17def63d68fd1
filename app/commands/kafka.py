"""`adp kafka up|down|status`: the project's own Kafka broker."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings
from adp.streams.kafka.broker.server import KAFKA_VERSION, BrokerError, KafkaCluster
from adp.streams.kafka.topics import parse_partitions

nodes_option = click.option(
    "--nodes",
    default=1,
    show_default=True,
    help="Brokers in the cluster (each is also a KRaft controller).",
)


@click.group()
def kafka() -> None:
    """Run Apache Kafka (KRaft mode) locally from Maven Central jars.

    Data, logs and pid files live under $ADP_HOME/kafka (default .adp/kafka); node i listens
    for clients on the port of -b/ADP_BOOTSTRAP (default 127.0.0.1:9092) plus i."""


def _partitions(ctx: click.Context, param: click.Parameter, value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        return parse_partitions(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


partitions_option = click.option(
    "--partitions",
    callback=_partitions,
    metavar="N|FAMILY=N[,...]",
    default=None,
    help="Partitions of topics created now: N for tasks, steps and trajectories, or per family "
    "(tasks=24,steps=12). Default 6 (dlq 1). A group has at most as many busy members "
    "as its topic has partitions. Existing topics keep theirs (see `adp topics grow`).",
)


@kafka.command()
@nodes_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for readiness.")
@partitions_option
@click.option(
    "--secure",
    is_flag=True,
    default=None,
    help="First start only: clients must use SASL_SSL (SCRAM-SHA-512/256) with TLS "
    "from a CA made here, and the StandardAuthorizer applies ACLs. Creates users "
    "admin, producer, runtime, aggregator and observer, each with its role's ACLs "
    "and a client config file (clients/<user>.toml, passwords generated).",
)
@kafka_options
def up(
    nodes: int, timeout: float, partitions: dict | None, secure: bool | None, conf: Settings
) -> None:
    """Start the broker(s) if not running, wait until ready, create the platform's topics."""
    try:
        cluster = KafkaCluster(nodes=nodes, conf=conf, partitions=partitions, secure=secure)
        was_running = all(n.running() for n in cluster.nodes)
        cluster.up(timeout=timeout)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    state = "already running" if was_running else "started"
    how = " (SASL_SSL)" if cluster.secure else ""
    click.echo(f"Kafka {KAFKA_VERSION} {state} at {cluster.bootstrap}{how} (logs: {cluster.dir})")
    if cluster.secure:
        click.echo(
            f"client settings per user: {cluster.security.client_config('<user>')} "
            f"(users: {', '.join(cluster.security.users())}); "
            f"e.g. adp status --config {cluster.security.client_config('observer')}"
        )


@kafka.command()
@nodes_option
@kafka_options
def down(nodes: int, conf: Settings) -> None:
    """Stop the broker(s); data is kept for the next `up`."""
    KafkaCluster(nodes=nodes, conf=conf).down()
    click.echo("Kafka stopped")


@kafka.command()
@nodes_option
@click.option("--json", "as_json", is_flag=True, help="Print the nodes as JSON.")
@kafka_options
def status(nodes: int, as_json: bool, conf: Settings) -> None:
    """Show each node's pid and address; exit code 3 when any node is down."""
    cluster = KafkaCluster(nodes=nodes, conf=conf)
    rows = cluster.status()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": KAFKA_VERSION,
                    "security": "SASL_SSL" if cluster.secure else "PLAINTEXT",
                    "clients": str(cluster.security.client_config("x").parent)
                    if cluster.secure
                    else None,
                    "nodes": rows,
                }
            )
        )
    else:
        table = Table(title=f"Kafka {KAFKA_VERSION}" + (" (SASL_SSL)" if cluster.secure else ""))
        for col in ("node", "running", "pid", "address", "log"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                str(r["node"]),
                "yes" if r["running"] else "no",
                str(r["pid"] or "-"),
                r["address"],
                r["log"],
            )
        Console().print(table)
    sys.exit(0 if all(r["running"] for r in rows) else 3)
