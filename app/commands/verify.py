"""`adp verify SOURCE`: judge stored trajectories again and write the new verdicts.

The spec of each trajectory comes from, in this order: --spec (one spec for every trajectory
selected), --tasks FILE (the `verify` of the line with the trajectory's task_id; trajectories of
tasks not in the file are left alone), or the spec the trajectory was verified with (after a
verifier was fixed). Only `verification`, `success` and `claimed_success` change: the steps, the
final result and everything else are written back exactly as they were read. The work itself
is streams/inspection/reverify.py; this module turns the flags into its arguments and prints.

Verifiers run here with this machine's python sandbox and LLM provider chain (the same settings
as `adp runtime`), a few at a time (--concurrency).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from adp.app.commands.options import kafka_options
from adp.app.commands.progress import counting_bar
from adp.connectors.tasks_source import TaskFileError, read_tasks
from adp.core.settings import Settings
from adp.runtimes.verify import BadSpec, VerifyContext, check_spec
from adp.streams.inspection.reverify import VerifyReport, run_verify
from adp.streams.inspection.trajectories import KAFKA, SourceError, describe_problems


def load_specs(tasks_file: Path) -> dict[str, Any]:
    """task_id -> verify spec of every good line of a tasks file (bad lines are errors)."""
    specs: dict[str, Any] = {}
    problems = []
    for item in read_tasks(tasks_file):
        if item.task is None:
            problems.append(item.error)
            continue
        try:
            check_spec(item.task.verify)
        except BadSpec as exc:
            problems.append(f"line {item.line_no}: {exc}")
            continue
        specs[item.task.task_id] = item.task.verify
    if problems:
        raise click.ClickException(f"{tasks_file}: " + "; ".join(problems[:10]))
    return specs


@click.command("verify")
@click.argument("source")
@click.option(
    "--spec",
    "spec_text",
    default=None,
    metavar="JSON",
    help="One verify spec (JSON) for every selected trajectory, e.g. "
    '\'{"type": "answer", "match": "numeric", "expected": 120}\'.',
)
@click.option(
    "--tasks",
    "tasks_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A tasks file: each trajectory gets the `verify` of its task's line.",
)
@click.option(
    "--type",
    "task_type",
    type=click.Choice(["reasoning", "code", "web"]),
    default=None,
    help="Only trajectories of this task type.",
)
@click.option(
    "--out",
    "destination",
    default=None,
    help="Write the re-verified trajectories here (folder, s3://..., kafka) "
    "instead of back to SOURCE.",
)
@click.option(
    "--concurrency", "-c", default=4, show_default=True, help="Trajectories verified at once."
)
@kafka_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def verify_command(
    source: str,
    spec_text: str | None,
    tasks_file: Path | None,
    task_type: str | None,
    destination: str | None,
    concurrency: int,
    as_json: bool,
    conf: Settings,
) -> None:
    """Verify the trajectories of SOURCE again and write the new verdicts.

    SOURCE is a trajectory folder, s3://bucket/prefix, or `kafka` (adp.trajectories; new
    verdicts are published there under the same key, and the running aggregator's sink
    rewrites the files). Without --spec or --tasks each trajectory is judged again with the
    spec it was verified with. Only the verdict and `success` change, never the steps.
    """
    spec, by_task = _specs(spec_text, tasks_file)
    from adp.runtimes.llm.client import build_model

    ctx = VerifyContext(model_factory=build_model)
    where = destination or source
    bar, tick = counting_bar("verify")
    try:
        with bar:
            report = asyncio.run(
                run_verify(
                    source, where, spec, by_task, task_type, ctx, max(1, concurrency), conf, tick
                )
            )
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    for line in describe_problems(report.read):
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    _print_summary(report, source, destination)


def _specs(spec_text: str | None, tasks_file: Path | None) -> tuple[Any, dict[str, Any] | None]:
    """(one spec for all, task_id -> spec) from --spec and --tasks; at most one of them."""
    if spec_text is not None and tasks_file is not None:
        raise click.UsageError("--spec and --tasks exclude each other")
    if spec_text is not None:
        try:
            spec = json.loads(spec_text)
            check_spec(spec)
        except (json.JSONDecodeError, BadSpec) as exc:
            raise click.BadParameter(str(exc), param_hint="--spec") from None
        return spec, None
    if tasks_file is not None:
        try:
            return None, load_specs(tasks_file)
        except TaskFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--tasks") from None
    return None, None


def _print_summary(report: VerifyReport, source: str, destination: str | None) -> None:
    where = destination or source
    click.echo(
        f"verified {sum(report.after.values())} of {report.read.read} trajectories in "
        f"{source} ({report.left_alone} left alone, {len(report.read.problems)} "
        f"skipped); {report.changed} verdicts changed; written to {where}"
    )
    for status in ("passed", "failed", "error", "unverified"):
        if report.before[status] or report.after[status]:
            click.echo(f"  {status:<10} {report.before[status]:>6} -> {report.after[status]}")
    if source == KAFKA and destination is None:
        click.echo("  (published to adp.trajectories: a running aggregator rewrites its files)")
