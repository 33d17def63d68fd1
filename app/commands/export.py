"""`adp export SOURCE --format chat|sharegpt|atif|parquet|tokens --out PATH [filters]`.

Reads trajectories from a folder, s3://bucket/prefix or `kafka`
(streams/inspection/trajectories.py), keeps those the filters select, rebuilds each one's
conversation from its raw LLM exchanges and writes the format with a dataset card
(connectors/export/). The output folder holds the split files and README.md; writing the same export
twice gives the same files."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import click

from adp import __version__
from adp.app.commands.options import kafka_options
from adp.app.commands.progress import counting_bar
from adp.connectors.export.card import card_facts, render_card
from adp.connectors.export.dataset import FORMATS, Exporter, ExportError
from adp.connectors.export.passk import PassTable, parse_pass_rate
from adp.connectors.export.select import Filters, parse_generations
from adp.core.settings import Settings
from adp.schemas.lineage import METHODS
from adp.streams.inspection.tail import parse_since
from adp.streams.inspection.trajectories import (
    ReadReport,
    SourceError,
    check_source,
    describe_problems,
    read_trajectories,
)
from adp.streams.kafka.clients import Conn


async def run_export(
    source: str, exporter: Exporter, filters: Filters, bootstrap: Conn = None, progress=None
) -> ReadReport:
    report = ReadReport(source)
    check_source(source)
    if filters.pass_rate is not None:
        filters = dataclasses.replace(filters, rates=await pass_rates(source, bootstrap))
    async for t in read_trajectories(source, report, bootstrap):
        why = filters.why_not(t)
        if why is not None:
            exporter.stats.filtered[why] += 1
        else:
            exporter.add(t)
        if progress:
            progress()
    return report


def _generations(text: str | None) -> frozenset[int] | None:
    if text is None:
        return None
    try:
        return parse_generations(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--generation") from None


def _methods(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    chosen = frozenset(m.strip() for m in text.split(",") if m.strip())
    unknown = sorted(chosen - set(METHODS))
    if unknown or not chosen:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none'}: choose from {', '.join(METHODS)}",
            param_hint="--method",
        )
    return chosen


async def pass_rates(source: str, bootstrap: Conn) -> dict[str, float | None]:
    """task_id -> the share of its judged samples that passed, over the whole source (a
    first pass: a task's samples may be anywhere in it)."""
    table = PassTable()
    async for t in read_trajectories(source, ReadReport(source), bootstrap):
        table.add_trajectory(t)
    return {task: table.rate(task) for task in table.tasks}


def _rate_bounds(ctx, param, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        return parse_pass_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("export")
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="chat: OpenAI fine-tuning / TRL JSONL; sharegpt: LLaMA-Factory / axolotl; "
    "atif: Harbor's ATIF v1.4 documents; parquet: for datasets, pandas, DuckDB; tokens: "
    "token ids, loss mask and logprobs per trajectory for RL trainers (Parquet).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the split files and the dataset card (README.md).",
)
@click.option("--verified-only", is_flag=True, help="Only trajectories a verifier passed.")
@click.option(
    "--success-only",
    is_flag=True,
    help="Only successful ones (the verdict where there is one, else the claim).",
)
@click.option(
    "--type",
    "task_type",
    type=click.Choice(["reasoning", "code", "web"]),
    default=None,
    help="Only this task type.",
)
@click.option(
    "--model",
    default=None,
    help="Only trajectories whose every LLM call used this model (a glob over the model or "
    "provider/model); one that mixed models is left out.",
)
@click.option(
    "--include-infrastructure",
    is_flag=True,
    help="Also trajectories given up to an outage of the LLM endpoint, sandbox or browser "
    "(error_type infrastructure); left out by default, they say nothing about the agent.",
)
@click.option("--min-steps", type=click.IntRange(0), default=None)
@click.option("--max-steps", type=click.IntRange(0), default=None)
@click.option(
    "--since", default=None, help="Only trajectories finished since: 2h, 3d, or an ISO time."
)
@click.option(
    "--generation",
    default=None,
    help="Only synthesized tasks of these generations: 2, 1,2 or 1-3 (0: hand-written).",
)
@click.option(
    "--method",
    default=None,
    help="Only synthesized tasks made by these methods: atomic, depth, width (comma-separated).",
)
@click.option(
    "--validation",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of task_ids in the validation split (0: everything in train).",
)
@click.option(
    "--pass-rate",
    callback=_rate_bounds,
    default=None,
    metavar="LOW:HIGH",
    help="Only tasks whose judged samples passed at a rate in [LOW, HIGH] (e.g. 0.2:0.8: "
    "neither always solved nor never); the rate is over all the task's samples in SOURCE.",
)
@click.option(
    "--on-drift",
    type=click.Choice(["split", "drop"]),
    default="split",
    show_default=True,
    help="tokens: where a call's prompt does not extend the previous prompt and completion "
    "(a chat template that rewrote history), start a new row there (split) or leave the "
    "trajectory out (drop); counted in the card either way.",
)
@click.option("--no-dedup", is_flag=True, help="Keep identical conversations.")
@click.option(
    "--tool-arguments",
    type=click.Choice(["string", "object"]),
    default="string",
    show_default=True,
    help="chat: tool-call arguments as JSON text (OpenAI) or parsed objects (chat "
    "templates that want a dict).",
)
@kafka_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def export_command(
    source: str,
    fmt: str,
    out: Path,
    verified_only: bool,
    success_only: bool,
    task_type: str | None,
    model: str | None,
    min_steps: int | None,
    max_steps: int | None,
    since: str | None,
    generation: str | None,
    method: str | None,
    validation: float,
    pass_rate: tuple[float, float] | None,
    on_drift: str,
    no_dedup: bool,
    tool_arguments: str,
    include_infrastructure: bool,
    as_json: bool,
    conf: Settings,
) -> None:
    """Export the trajectories of SOURCE (a trajectory folder, s3://bucket/prefix, or `kafka`
    for adp.trajectories) as training data in --out, with a dataset card (README.md).

    Conversations are rebuilt from the raw LLM exchanges (what the model saw and said), never
    generated; one that breaks the chat format's rules is left out and counted in the card.
    The train/validation split is by task_id, so the samples of one task stay together.
    """
    filters = Filters(
        verified_only,
        success_only,
        task_type,
        model,
        min_steps,
        max_steps,
        parse_since(since) if since else None,
        infrastructure=include_infrastructure,
        generations=_generations(generation),
        methods=_methods(method),
        pass_rate=pass_rate,
    )
    try:
        exporter = Exporter(
            fmt, out, validation, not no_dedup, tool_arguments, __version__, on_drift=on_drift
        )
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    bar, tick = counting_bar("export")
    try:
        with bar:
            report = asyncio.run(run_export(source, exporter, filters, conf, tick))
        stats = exporter.close()
    except (SourceError, ExportError) as exc:
        raise click.ClickException(str(exc)) from None
    (out / "README.md").write_text(
        render_card(
            fmt,
            stats,
            exporter.files(),
            source,
            filters.describe(),
            validation,
            not no_dedup,
            tool_arguments,
        ),
        encoding="utf-8",
    )
    for line in describe_problems(report):
        click.echo(line, err=True)
    if as_json:
        click.echo(
            json.dumps({"read": report.read, "skipped": len(report.problems), **card_facts(stats)})
        )
        return
    rows = ", ".join(f"{n} {split}" for split, n in stats.rows.items()) or "no"
    click.echo(
        f"exported {sum(stats.trajectories.values())} of {report.read} trajectories "
        f"from {source} as {fmt}: {rows} rows in {out} (card: {out / 'README.md'})"
    )
    if stats.filtered:
        click.echo(
            "  filtered out: " + ", ".join(f"{n} {why}" for why, n in stats.filtered.most_common())
        )
    if stats.left_out:
        click.echo(
            "  left out: " + ", ".join(f"{n} {why}" for why, n in stats.left_out.most_common())
        )
    if stats.duplicates:
        click.echo(f"  {stats.duplicates} duplicate conversations dropped")
