"""`adp topics describe|create|grow`: the platform's topics as the broker has them.

Partition counts are set per topic family when topics are created and can only grow. What
growing means for data in flight is said by `grow --help` and README ("Scaling past six").
"""

from __future__ import annotations

import asyncio
import json

import click
from rich.console import Console
from rich.table import Table

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings
from adp.schemas.contracts import TaskType
from adp.streams.kafka import topics
from adp.streams.kafka.admin import (
    admin_client,
    cluster_broker_ids,
    describe_topics,
    ensure_topics,
    grow_partitions,
)

CHANGELOG_SUFFIX = "-assembly-changelog"  # the aggregator's table (streams/aggregator/faust_app.py)
CONSEQUENCES = {
    "tasks": "new tasks are spread over more partitions, so more runtimes per type take work; "
    "the task_id -> partition mapping changes for tasks produced from now on. Running "
    "runtimes pick up the new partitions at their next metadata refresh (at most 5 "
    "minutes; restart them to start at once).",
    "steps": "the task_id -> partition mapping of step events changes: stop every runtime and "
    "let the aggregator finish what is in flight first (`adp status`: nothing running), "
    "else an attempt's later events land on another partition than its first ones and "
    "the attempt can only expire (the task is redone only if re-produced). Restart "
    "the aggregator afterwards: it grows its changelog to match.",
    "trajectories": "a task republished later may land on another partition than its first "
    "record, so compaction keeps both; readers take the latest per task_id.",
    "dlq": "none for the platform (nothing is keyed by partition there).",
}


@click.group("topics")
def topics_command() -> None:
    """Describe, create and grow the platform's topics (partitions per topic family)."""


async def _platform_topic_names(conf: Settings) -> list[str]:
    async with admin_client(conf) as admin:
        names = await admin.list_topics()
    known = [s.name for s in topics.platform_topics()]
    return known + sorted(n for n in names if n.endswith(CHANGELOG_SUFFIX))


@topics_command.command("describe")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per topic.")
@kafka_options
def describe_command(as_json: bool, conf: Settings) -> None:
    """Each platform topic (and aggregator changelog): family, partitions, replication and the
    configs set on it. Exit code 1 if a platform topic is missing."""

    async def main():
        names = await _platform_topic_names(conf)
        described = await describe_topics(conf, names)
        return {name: described[name] for name in names if name in described}

    found = asyncio.run(main())
    missing = [s.name for s in topics.platform_topics() if s.name not in found]
    if as_json:
        for info in found.values():
            click.echo(
                json.dumps(
                    {
                        "topic": info.name,
                        "family": _family(info.name),
                        "partitions": info.partitions,
                        "replication": info.replication,
                        "configs": info.configs,
                    }
                )
            )
    else:
        table = Table(title=f"topics at {conf.describe()}")
        for col in ("topic", "family", "partitions", "replication", "configs"):
            table.add_column(col, overflow="fold")
        for info in found.values():
            table.add_row(
                info.name,
                _family(info.name),
                str(info.partitions),
                str(info.replication),
                " ".join(f"{k}={v}" for k, v in sorted(info.configs.items())),
            )
        Console().print(table)
    if missing:
        click.echo(f"missing: {', '.join(missing)} (create them: adp topics create)", err=True)
        raise SystemExit(1)


def _family(name: str) -> str:
    return topics.family_of(name) or ("changelog" if name.endswith(CHANGELOG_SUFFIX) else "-")


def _partitions(ctx: click.Context, param: click.Parameter, value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        return topics.parse_partitions(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@topics_command.command("create")
@click.option(
    "--partitions",
    callback=_partitions,
    metavar="N|FAMILY=N[,...]",
    default=None,
    help="N for tasks, steps and trajectories, or per family (tasks=24,steps=12). "
    "Default 6 (dlq 1).",
)
@click.option("--replication", type=int, default=None, help="Replication factor [min(3, brokers)].")
@kafka_options
def create_command(partitions: dict | None, replication: int | None, conf: Settings) -> None:
    """Create the platform topics that do not exist yet; existing ones are left as they are."""

    async def main() -> list[str]:
        rf = replication or min(3, len(await cluster_broker_ids(conf)))
        return await ensure_topics(conf, replication=rf, partitions=partitions)

    created = asyncio.run(main())
    click.echo(f"created: {', '.join(created)}" if created else "all platform topics exist")


@topics_command.command("grow")
@click.argument("target")
@click.option(
    "--partitions",
    "count",
    type=click.IntRange(min=1),
    required=True,
    help="The new partition count (Kafka only adds partitions).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Grow adp.steps even while tasks are running (their attempts may expire).",
)
@kafka_options
def grow_command(target: str, count: int, force: bool, conf: Settings) -> None:
    """Grow TARGET (a family: tasks, steps, trajectories, dlq; or one topic name) to
    --partitions N.

    \b
    Consequences, by family:
      tasks         more runtimes per type get work; runtimes see the new partitions
                    within 5 minutes (restart them to start at once)
      steps         stop the runtimes and let in-flight attempts finish first (refused
                    while `adp status` shows tasks running, unless --force); restart the
                    aggregator afterwards: it grows its changelog to match
      trajectories  a republished task may land on another partition (readers take the
                    latest per task_id)
    """
    if target in topics.FAMILIES:
        family, names = target, topics.family_topics(target)
    elif topics.family_of(target):
        family, names = topics.family_of(target), [target]
    else:
        raise click.BadParameter(
            f"{target!r} is neither a family ({', '.join(topics.FAMILIES)}) nor a platform topic",
            param_hint="TARGET",
        )

    async def main() -> dict[str, tuple[int, int]]:
        if family == "steps" and not force:
            running = await running_tasks(conf)
            if running:
                raise click.ClickException(
                    f"{running} task(s) are running: growing {topics.STEPS} now moves their "
                    f"later events to other partitions. Stop the runtimes, wait for `adp status` "
                    f"to show nothing running, then grow (or pass --force)."
                )
        return await grow_partitions(conf, {name: count for name in names})

    try:
        changed = asyncio.run(main())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not changed:
        click.echo(f"nothing to do: {', '.join(names)} already have {count} partitions")
        return
    for name, (before, after) in changed.items():
        click.echo(f"{name}: {before} -> {after} partitions")
    click.echo(f"note: {CONSEQUENCES[family]}")


async def running_tasks(conf: Settings) -> int:
    """Tasks the runtime groups listed as running in their last commits
    (streams/runtime/poison.py)."""
    from adp.streams.inspection.status import running_in

    total = 0
    async with admin_client(conf) as admin:
        for task_type in TaskType:
            group = topics.runtime_group(task_type.value)
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except Exception:
                continue
            total += sum(running_in(meta.metadata) for meta in committed.values())
    return total
