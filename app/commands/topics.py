"""`adp topics describe|create|grow|strimzi`: the platform's topics as the broker has them, and
as Strimzi resources for Kubernetes.

Partition counts are set per topic family when topics are created and can only grow. What
growing means for data in flight is said by `grow --help` and README ("Scaling past six").
"""

from __future__ import annotations

import asyncio
import json
import re

import click
from rich.console import Console
from rich.table import Table

from adp.app.commands.options import kafka_options
from adp.core.settings import Settings, settings
from adp.schemas.contracts import TaskType
from adp.streams.kafka import strimzi, topics
from adp.streams.kafka.admin import (
    admin_client,
    cluster_broker_ids,
    describe_topics,
    ensure_topics,
    grow_partitions,
)

# a string YAML reads back as that same string when written bare: starts with a letter, no
# characters YAML gives a meaning, and not one of YAML 1.1's words for booleans or null
_PLAIN = re.compile(r"(?!(?i:y|n|yes|no|true|false|on|off|null)$)[A-Za-z][A-Za-z0-9._/-]*")
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


@topics_command.command("strimzi")
@click.option(
    "--cluster",
    default="adp",
    show_default=True,
    help="Name of the Strimzi Kafka resource (label strimzi.io/cluster).",
)
@click.option("--namespace", default=None, help="metadata.namespace [none: kubectl's current].")
@click.option(
    "--partitions",
    callback=_partitions,
    metavar="N|FAMILY=N[,...]",
    default=None,
    help="As for `adp topics create`. Default 6 (dlq 1).",
)
@click.option(
    "--replication", type=click.IntRange(min=1), default=3, show_default=True, help="Replicas."
)
@click.option(
    "--only",
    type=click.Choice(["topics", "users"]),
    default=None,
    help="Print only the KafkaTopics or only the KafkaUsers [both].",
)
@click.option(
    "--authentication",
    type=click.Choice(strimzi.AUTHENTICATIONS),
    default="scram-sha-512",
    show_default=True,
    help="How each KafkaUser logs in (Strimzi writes its password or certificate to a Secret "
    "of the user's name).",
)
@click.option(
    "--app-id",
    default=topics.AGGREGATOR_GROUP,
    show_default=True,
    help="The aggregator's --app-id (its group and changelog topics' prefix).",
)
def strimzi_command(
    cluster: str,
    namespace: str | None,
    partitions: dict | None,
    replication: int,
    only: str | None,
    authentication: str,
    app_id: str,
) -> None:
    """Print the platform's topics and ACL roles as Strimzi resources (YAML for kubectl apply):
    a KafkaTopic per topic, as `adp topics create` makes them, and a KafkaUser per ACL role
    (adp-producer, adp-runtime, adp-aggregator, adp-observer) with that role's ACLs. Nothing
    is sent to Kafka."""
    conf = settings()
    resources = []
    if only in (None, "topics"):
        resources += strimzi.kafka_topics(
            cluster, partitions, replication, conf.max_message_bytes, namespace
        )
    if only in (None, "users"):
        resources += strimzi.kafka_users(cluster, app_id, authentication, namespace)
    click.echo(
        "# adp topics strimzi: generated from the platform's topic and ACL tables\n"
        + "---\n".join(yaml_document(r) for r in resources),
        nl=False,
    )


def yaml_document(value: dict) -> str:
    """Block-style YAML of plain data. Every string is written double-quoted in JSON's syntax,
    which is YAML's too, so no value ("-1", "*", "true") is ever read back as another type."""
    return "".join(line + "\n" for line in _yaml_lines(value, 0))


def _yaml_lines(value, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{_scalar(key)}:", *_yaml_lines(item, indent + 2)]
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item)}")
    else:
        for item in value:
            nested = _yaml_lines(item, indent + 2) if isinstance(item, (dict, list)) else []
            if nested and item:
                lines += [f"{pad}- {nested[0].lstrip()}", *nested[1:]]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict | list):  # empty
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value  # a name such as apiVersion's or a key: plain, as people write them
    return json.dumps(value)
