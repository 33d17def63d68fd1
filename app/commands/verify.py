"""`adp verify SOURCE`: judge stored trajectories again and write the new verdicts.

The spec of each trajectory comes from, in this order: --spec (one spec for every trajectory
selected), --tasks FILE (the `verify` of the line with the trajectory's task_id; trajectories of
tasks not in the file are left alone), or the spec the trajectory was verified with (after a
verifier was fixed). Only `verification`, `success` and `claimed_success` change: the steps, the
final result and everything else are written back exactly as they were read.

Verifiers run here with this machine's python sandbox and LLM provider chain (the same settings
as `adp runtime`), a few at a time (--concurrency).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from adp.app.commands.options import kafka_options
from adp.app.commands.progress import counting_bar
from adp.connectors.sinks.destinations import open_sink
from adp.connectors.tasks_source import TaskFileError, read_tasks
from adp.core.settings import Settings
from adp.runtimes.verify import BadSpec, Subject, VerifyContext, check_spec, verify
from adp.schemas.contracts import Trajectory
from adp.streams.aggregator.assembly import verified_success
from adp.streams.inspection.trajectories import (
    KAFKA,
    ReadReport,
    SourceError,
    check_source,
    describe_problems,
    read_trajectories,
)
from adp.streams.kafka.clients import Conn


@dataclass
class VerifyReport:
    read: ReadReport
    before: Counter = field(default_factory=Counter)
    after: Counter = field(default_factory=Counter)
    changed: int = 0
    written: int = 0
    left_alone: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read.read,
            "skipped": len(self.read.problems),
            "verified": sum(self.after.values()),
            "left_alone": self.left_alone,
            "changed": self.changed,
            "written": self.written,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def reverified(trajectory: Trajectory, verdict: Any) -> Trajectory:
    """The trajectory with a new verdict: nothing else changes."""
    claimed = trajectory.claimed
    return trajectory.model_copy(
        update={
            "verification": verdict,
            "claimed_success": claimed,
            "success": verified_success(claimed, verdict),
        }
    )


def spec_for(
    trajectory: Trajectory, spec: Any, by_task: dict[str, Any] | None, task_type: str | None
) -> tuple[bool, Any]:
    """(selected, spec) for one trajectory."""
    if task_type is not None and trajectory.task_type != task_type:
        return False, None
    if spec is not None:
        return True, spec
    if by_task is not None:
        return (trajectory.task_id in by_task), by_task.get(trajectory.task_id)
    recorded = trajectory.verification.spec if trajectory.verification else None
    if recorded is None and isinstance(trajectory.metadata.task, dict):
        recorded = trajectory.metadata.task.get("verify")
    return True, recorded


async def run_verify(
    source: str,
    destination: str,
    spec: Any,
    by_task: dict[str, Any] | None,
    task_type: str | None,
    ctx: VerifyContext,
    concurrency: int = 4,
    bootstrap: Conn = None,
    progress=None,
) -> VerifyReport:
    report = VerifyReport(ReadReport(source))
    check_source(source)
    sink = await open_sink(destination, conf=bootstrap)
    slots = asyncio.Semaphore(concurrency)
    failures: list[BaseException] = []

    async def one(t: Trajectory, chosen: Any) -> None:
        try:
            try:
                subject = Subject.of(t, chosen)
            except ValueError as exc:
                report.read.skip(t.key, f"cannot rebuild its task: {exc}")
                return
            verdict = await verify(chosen, subject, ctx)
            new = reverified(t, verdict)
            report.after[verdict.status] += 1
            if (new.verdict_status, new.success) != (t.verdict_status, t.success):
                report.changed += 1
            try:
                await sink.write(new)
            except Exception as exc:
                failures.append(exc)
                return
            report.written += 1
            if progress:
                progress()
        finally:
            slots.release()

    try:
        tasks = []
        async for t in read_trajectories(source, report.read, bootstrap):
            selected, chosen = spec_for(t, spec, by_task, task_type)
            if not selected:
                report.left_alone += 1
                continue
            report.before[t.verdict_status] += 1
            await slots.acquire()  # bounded: a large source never sits in memory whole
            tasks.append(asyncio.create_task(one(t, chosen)))
        await asyncio.gather(*tasks)
    finally:
        await sink.close()
    if failures:
        raise SourceError(
            f"{len(failures)} trajectories could not be written back, first: {failures[0]}"
        )
    return report


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
    if spec_text is not None and tasks_file is not None:
        raise click.UsageError("--spec and --tasks exclude each other")
    spec = by_task = None
    if spec_text is not None:
        try:
            spec = json.loads(spec_text)
            check_spec(spec)
        except (json.JSONDecodeError, BadSpec) as exc:
            raise click.BadParameter(str(exc), param_hint="--spec") from None
    if tasks_file is not None:
        try:
            by_task = load_specs(tasks_file)
        except TaskFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--tasks") from None
    from adp.runtimes.llm.client import build_model

    ctx = VerifyContext(model_factory=build_model)
    bar, tick = counting_bar("verify")
    try:
        with bar:
            report = asyncio.run(
                run_verify(
                    source,
                    destination or source,
                    spec,
                    by_task,
                    task_type,
                    ctx,
                    max(1, concurrency),
                    conf,
                    tick,
                )
            )
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    for line in describe_problems(report.read):
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
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
