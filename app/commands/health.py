"""`adp health`: ask every platform process of this host (this ADP_HOME) how it is.

The image's health check: in a container it asks the one component the container runs, on the
port that component really got (core/served.py), so replicas on one host network each answer
for themselves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import click

from adp.core import served
from adp.core.errors import ComponentCrashed


def ask(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, why not) from one /health endpoint."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True, ""
    except urllib.error.HTTPError as exc:  # 503: the component names its problems
        try:
            problems = json.loads(exc.read()).get("problems") or [f"HTTP {exc.code}"]
        except ValueError:
            problems = [f"HTTP {exc.code}"]
        return False, "; ".join(problems)
    except (urllib.error.URLError, OSError) as exc:
        return False, f"not answering ({getattr(exc, 'reason', exc)})"


@click.command("health")
@click.option(
    "--port",
    type=int,
    default=None,
    help="Ask only the component on this port of 127.0.0.1 [every one recorded here].",
)
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds per answer.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
def health_command(port: int | None, timeout: float, quiet: bool) -> None:
    """Exit 0 when every runtime and aggregator of this host (sharing ADP_HOME) reports healthy
    on its /health: broker reachable, work making progress. Exit 4 when one does not answer or
    reports a problem, or none runs. Each finds its own port (the next free one after
    ADP_METRICS_PORT), so this asks the right process even where replicas share a network."""
    if port is not None:
        targets = [served.Served(f"port {port}", 0, port)]
    else:
        targets = served.live()
    if not targets:
        raise ComponentCrashed(
            "no platform process serves /health here yet (none recorded under ADP_HOME/run)"
        )
    failed = []
    for target in targets:
        ok, why = ask(target.health_url, timeout)
        where = f"{target.component} (port {target.port})"
        if not ok:
            failed.append(f"{where}: {why}")
        elif not quiet:
            click.echo(f"{where}: healthy")
    if failed:
        raise ComponentCrashed("unhealthy: " + " | ".join(failed))
