"""`adp groups`: the group stream of adp.client (client/stream.py) from the command line: optionally
submit a tasks file with k samples and a policy version, then print every complete group of
samples once, as it lands (one JSON object per line with --json), committing each after it
was printed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import click

from adp.app.commands.options import kafka_options
from adp.client import Group, GroupStream, submit
from adp.connectors.tasks_source import read_tasks
from adp.core.settings import Settings


def summary_line(group: Group) -> str:
    rewards = " ".join("-" if r is None else f"{r:g}" for r in group.rewards)
    tokens = [row for s in group.ordered for row in s.tokens()]
    exact = (
        f" | tokens {sum(r['num_tokens'] for r in tokens)} "
        f"({sum(r['num_generated'] for r in tokens)} generated)"
        if tokens
        else ""
    )
    flag = "" if group.complete else f" | INCOMPLETE, missing samples {group.missing}"
    version = "" if group.policy_version is None else f" | policy v{group.policy_version}"
    return (
        f"{group.task_id} ({group.task_type}) {len(group.samples)}/{group.expected} samples | "
        f"rewards {rewards} | spread {group.spread:g}{exact}{version}{flag}"
    )


async def _submit_file(path: Path, samples: int | None, policy_version: int | None, conf) -> int:
    items = list(read_tasks(path, max_line_bytes=conf.max_message_bytes))
    for item in items:
        if item.task is None:
            click.echo(item.error, err=True)
    good = [item.task for item in items if item.task is not None]
    if not good:
        raise click.ClickException(f"{path}: no valid task to submit")
    report = await submit(good, samples=samples, policy_version=policy_version, conf=conf)
    click.echo(
        f"submitted {sum(report.tasks.values())} tasks ({report.total_sent} samples) from "
        f"{path}" + (f" for policy v{policy_version}" if policy_version is not None else ""),
        err=True,
    )
    return len(items) - len(good)


@click.command("groups")
@click.option(
    "--submit",
    "submit_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="First publish this tasks.jsonl (as `adp produce` does).",
)
@click.option("--samples", type=click.IntRange(1, 1000), default=None, help="k of submitted tasks.")
@click.option(
    "--policy-version",
    type=click.IntRange(0),
    default=None,
    help="Set on every submitted task; and the trainer's version for --max-staleness.",
)
@click.option(
    "--group",
    default="adp-trainer",
    show_default=True,
    help="The consumer group: a run goes on where the last run of this name committed.",
)
@click.option("--follow", is_flag=True, help="Keep waiting for new groups until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group and line.")
@click.option(
    "--form",
    type=click.Choice(["summary", "trajectories", "tokens"]),
    default="summary",
    show_default=True,
    help="--json: each sample's summary only, or also its whole trajectory, or its token "
    "rows (ids, loss mask, logprobs).",
)
@click.option(
    "--min-spread",
    type=click.FloatRange(0),
    default=None,
    help="Drop groups whose rewards differ by less (e.g. 0.01: all passes or all failures).",
)
@click.option(
    "--max-staleness",
    type=click.IntRange(0),
    default=None,
    help="Drop groups sampled more than this many versions before --policy-version.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=900.0,
    show_default=True,
    help="Seconds after its first sample landed that a group that cannot complete (a sample "
    "in the DLQ) is released with what it has, flagged incomplete.",
)
@click.option(
    "--start",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    show_default=True,
    help="Where a group that never committed begins on adp.trajectories.",
)
@click.option(
    "--max", "most", type=click.IntRange(1), default=None, help="Stop after this many groups."
)
@kafka_options
def groups_command(
    submit_file: Path | None,
    samples: int | None,
    policy_version: int | None,
    group: str,
    follow: bool,
    as_json: bool,
    form: str,
    min_spread: float | None,
    max_staleness: int | None,
    deadline: float,
    start: str,
    most: int | None,
    conf: Settings,
) -> None:
    """Print the groups of samples of adp.trajectories -- all k samples of a task, with their
    verdicts and rewards -- each once: a group printed is committed before the next one, so
    a run that is killed and started again with the same --group goes on where it stopped.
    Without --follow it stops once it read what the topic held when it started."""
    stream = GroupStream(
        conf,
        group,
        min_spread=min_spread,
        max_staleness=max_staleness,
        policy_version=policy_version,
        deadline=deadline,
        follow=follow,
        start=start,
    )

    async def main() -> int:
        bad = 0
        if submit_file is not None:
            bad = await _submit_file(submit_file, samples, policy_version, conf)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with stream:
            await _print_groups(stream, as_json, form, most, stop)
        s = stream.stats
        dropped = ", ".join(f"{n} {why}" for why, n in s.dropped.items())
        click.echo(
            f"{s.delivered} groups ({s.incomplete} incomplete)"
            + (f"; dropped: {dropped}" if dropped else ""),
            err=True,
        )
        return 1 if bad else 0

    sys.exit(asyncio.run(main()))


async def _print_groups(
    stream: GroupStream, as_json: bool, form: str, most: int | None, stop: asyncio.Event
) -> None:
    shown = 0
    groups = aiter(stream)
    while not stop.is_set() and (most is None or shown < most):
        step = asyncio.ensure_future(anext(groups))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not step.done():
            step.cancel()
            break
        try:
            group = step.result()
        except StopAsyncIteration:
            break
        click.echo(json.dumps(group.as_json(form)) if as_json else summary_line(group))
        sys.stdout.flush()
        stream.ack(group)
        shown += 1
