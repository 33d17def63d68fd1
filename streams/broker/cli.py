"""`adp kafka up|down|status`: the project's own Kafka broker."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from adp.streams.broker.server import KAFKA_VERSION, BrokerError, KafkaCluster

nodes_option = click.option("--nodes", default=1, show_default=True,
                            help="Brokers in the cluster (each is also a KRaft controller).")


@click.group()
def kafka() -> None:
    """Run Apache Kafka (KRaft mode) locally from Maven Central jars.

    Data, logs and pid files live under $ADP_HOME/kafka (default .adp/kafka); the first client
    port comes from ADP_BOOTSTRAP (default 127.0.0.1:9092)."""


@kafka.command()
@nodes_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for readiness.")
def up(nodes: int, timeout: float) -> None:
    """Start the broker(s) if not running, wait until ready, create the platform's topics."""
    cluster = KafkaCluster(nodes=nodes)
    was_running = all(n.running() for n in cluster.nodes)
    try:
        cluster.up(timeout=timeout)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    state = "already running" if was_running else "started"
    click.echo(f"Kafka {KAFKA_VERSION} {state} at {cluster.bootstrap} (logs: {cluster.dir})")


@kafka.command()
@nodes_option
def down(nodes: int) -> None:
    """Stop the broker(s); data is kept for the next `up`."""
    cluster = KafkaCluster(nodes=nodes)
    cluster.down()
    click.echo("Kafka stopped")


@kafka.command()
@nodes_option
def status(nodes: int) -> None:
    """Show each node's pid and address; exit code 3 when any node is down."""
    cluster = KafkaCluster(nodes=nodes)
    table = Table(title=f"Kafka {KAFKA_VERSION}")
    for col in ("node", "running", "pid", "address", "log"):
        table.add_column(col)
    rows = cluster.status()
    for r in rows:
        table.add_row(str(r["node"]), "yes" if r["running"] else "no", str(r["pid"] or "-"),
                      r["address"], r["log"])
    Console().print(table)
    sys.exit(0 if all(r["running"] for r in rows) else 3)
