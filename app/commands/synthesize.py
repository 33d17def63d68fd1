"""`adp synthesize SOURCE`: the command around streams/synthesis/ (flags, progress, the report,
exit codes). docs/synthesis.md is the guide."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import IO, Any

import click

from adp.app.commands.options import kafka_options
from adp.connectors.export.passk import parse_pass_rate
from adp.connectors.sinks.destinations import KAFKA
from adp.core.process import exit_if_stuck
from adp.core.settings import Settings
from adp.schemas.contracts import MAX_SAMPLES
from adp.schemas.lineage import METHODS
from adp.streams.kafka.topics import AGGREGATOR_GROUP
from adp.streams.synthesis.accounting import Limits, Report
from adp.streams.synthesis.batch import LLM_UNAVAILABLE
from adp.streams.synthesis.engine import Decision, Options
from adp.streams.synthesis.follow import SYNTHESIZER_GROUP
from adp.streams.synthesis.setup import Plan, Solve


def _methods(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none'}: choose from {', '.join(METHODS)}",
            param_hint="--methods",
        )
    if "atomic" not in chosen:
        raise click.BadParameter(
            "depth and width build on atomic tasks: include atomic", param_hint="--methods"
        )
    return chosen


def _check_mode(source: str, follow: bool, out: Path | None) -> None:
    if follow and source != KAFKA:
        raise click.UsageError(f"--follow reads adp.trajectories: SOURCE must be {KAFKA}")
    if follow and out is not None:
        raise click.UsageError("--follow produces to the task topics; --out is for one pass")


@click.command("synthesize")
@click.argument("source")
@click.option(
    "--follow",
    is_flag=True,
    help="The flywheel: a consumer group on adp.trajectories producing accepted tasks to the "
    "task topics as verified trajectories arrive, until a limit stops it (SOURCE kafka).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the accepted tasks to this tasks.jsonl file for review instead of producing.",
)
@click.option(
    "--include-unverified",
    is_flag=True,
    help="Also grow from trajectories whose task names no verifier (or whose verifier could "
    "not run) and that the agent claimed; never from failed ones.",
)
@click.option(
    "--methods",
    default=",".join(METHODS),
    show_default=True,
    help="atomic: a question answered by one value a tool returned; depth: needs an atomic "
    "task's answer first; width: two atomic tasks asked together.",
)
@click.option(
    "--per-parent",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Proposals of each method asked for per parent trajectory.",
)
@click.option(
    "--max-generations",
    type=click.IntRange(1),
    default=None,
    help="No task beyond this generation (hand-written tasks are generation 0); with --follow "
    "the flywheel stops once it is reached and every task has come back.",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(1),
    default=None,
    help="Stop after this many tasks (with --follow: counted across restarts).",
)
@click.option(
    "--budget-usd",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop once synthesis LLM calls cost this much (priced by ADP_PRICES; with --follow "
    "shared by the whole group and its restarts).",
)
@click.option(
    "--solve",
    "solve_k",
    type=click.IntRange(1, MAX_SAMPLES),
    default=None,
    help="Run each candidate K times with the runtimes (they must be running) and keep it "
    "only when its pass rate lies within --pass-rate.",
)
@click.option(
    "--pass-rate",
    default="0.1:0.9",
    show_default=True,
    help="LOW:HIGH, inclusive: the pass rates --solve keeps (always or never solved tasks "
    "teach nothing).",
)
@click.option(
    "--solve-timeout",
    type=click.FloatRange(1),
    default=900.0,
    show_default=True,
    help="Seconds to wait for a candidate's K trajectories.",
)
@click.option(
    "--near-duplicate",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.8,
    show_default=True,
    help="Word-bigram similarity (MinHash estimate) from which a task is a near duplicate.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Parents synthesized at once.",
)
@click.option("--group", default=SYNTHESIZER_GROUP, show_default=True, help="--follow's group.")
@click.option(
    "--aggregator-group",
    default=AGGREGATOR_GROUP,
    show_default=True,
    help="The aggregator's group (`adp aggregate --app-id`), watched to tell when it is idle.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per candidate: accepted, resumed or dropped and why, with the "
    "raw exchange of a tool check that dropped it.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(64),
    default=1024,
    show_default=True,
    help="Completion tokens per synthesis call.",
)
@kafka_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def synthesize_command(
    source: str,
    follow: bool,
    out: Path | None,
    report_path: Path | None,
    as_json: bool,
    conf: Settings,
    **flags: Any,
) -> None:
    """New verified tasks from the trajectories of SOURCE (a trajectory folder, s3://bucket/
    prefix, or `kafka` for adp.trajectories), grounded in what their tools really returned.

    For each trajectory a verifier passed, the model of the provider chain proposes atomic,
    depth and width tasks; each becomes a task of the parent's type whose verify spec checks
    a value a tool returned. Duplicates (exact or near) of tasks already produced, tasks the
    model answers without tools, and with --solve tasks outside --pass-rate are dropped and
    counted. Accepted tasks carry their lineage (parents, method, generation, the raw
    synthesis calls and their cost) in metadata.lineage and deterministic ids, so running it
    again, or restarting the flywheel after a crash, produces nothing twice.

    \b
    Exit codes: 0 done (or stopped by a limit, as the report says), 1 bad input,
    3 Kafka unreachable, 5 the LLM did not answer for some parents (left for a later run).
    """
    _check_mode(source, follow, out)
    decisions = report_path.open("w", encoding="utf-8") if report_path else None
    plan = _plan(conf, follow, flags, _writer(decisions) if decisions else None)
    try:
        report = asyncio.run(
            _run(source, plan, follow, out, flags["group"], flags["aggregator_group"])
        )
    finally:
        if decisions:
            decisions.close()
    _print(report, source, out, as_json)
    if report.parents_skipped.get(LLM_UNAVAILABLE):
        sys.exit(5)


def _plan(conf: Settings, follow: bool, flags: dict[str, Any], on_decision) -> Plan:
    """What the flags ask for, and the model of the provider chain."""
    try:
        bounds = parse_pass_rate(flags["pass_rate"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pass-rate") from None
    from adp.runtimes.llm.client import build_model

    concurrency, solve_k = flags["concurrency"], flags["solve_k"]
    return Plan(
        conf=conf,
        model=build_model({"max_tokens": flags["max_tokens"], "connections": concurrency * 2}),
        options=Options(
            per_method=flags["per_parent"],
            methods=_methods(flags["methods"]),
            include_unverified=flags["include_unverified"],
            max_generations=flags["max_generations"],
            synthesizer=flags["group"] if follow else "batch",
        ),
        limits=Limits(flags["max_generations"], flags["max_tasks"], flags["budget_usd"]),
        near_duplicate=flags["near_duplicate"],
        concurrency=concurrency,
        solve=Solve(solve_k, bounds, flags["solve_timeout"]) if solve_k else None,
        on_decision=on_decision,
    )


def _writer(stream: IO[str]):
    def write(decision: Decision) -> None:
        stream.write(json.dumps(decision.as_json(), ensure_ascii=False) + "\n")
        stream.flush()  # a reader (the demo) follows the file as it grows

    return write


async def _run(
    source: str, plan: Plan, follow: bool, out: Path | None, group: str, aggregator_group: str
) -> Report:
    try:
        if follow:
            from adp.streams.synthesis.follow import Flywheel

            return await Flywheel(plan, group, aggregator_group).run(_stop_on_signals())
        from adp.streams.inspection.trajectories import (
            ReadReport,
            check_source,
            describe_problems,
            read_trajectories,
        )
        from adp.streams.synthesis.batch import BatchSynthesis

        check_source(source)
        passes: list[ReadReport] = []

        def read():  # one pass over SOURCE
            passes.append(ReadReport(source))
            return read_trajectories(source, passes[-1], plan.conf)

        report = await BatchSynthesis(read, plan, out, _progress(), source == KAFKA).run()
        for line in describe_problems(passes[0]) if passes else []:  # once, not per pass
            click.echo(line, err=True)
        return report
    finally:
        close = getattr(plan.model, "aclose", None)
        if close is not None:
            await close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()

    def on_signal() -> None:
        if not stop.is_set():  # the flywheel drains; this ends a shutdown stuck on a broker
            exit_if_stuck(60, "adp synthesize")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop


def _progress():
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
    status = console.status("synthesizing")
    status.start()

    def show(report: Report) -> None:
        status.update(
            f"synthesizing: {report.parents_read} trajectories read, {report.parents_used} "
            f"used, {report.accepted_total} tasks accepted, "
            f"{report.spend.calls} LLM calls"
        )

    return show


def _print(report: Report, source: str, out: Path | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"synthesized from {source}", title_justify="left")
    for column in ("method", "generation", "tasks accepted"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for (method, generation), n in sorted(report.accepted.items(), key=lambda kv: kv[0][::-1]):
        table.add_row(method, str(generation), str(n))
    console.print(table)
    spend = report.spend
    cost = f"${spend.usd:.6f}" if spend.priced else "cost not priced (ADP_PRICES)"
    lines = [
        f"trajectories: {report.parents_read} read, {report.parents_used} used as parents"
        + "".join(f", {n} {why}" for why, n in report.parents_skipped.most_common()),
        "candidates: "
        + ", ".join(f"{n} {m}" for m, n in sorted(report.proposed.items()))
        + f" proposed; {report.accepted_total} accepted"
        + (f", {report.resumed} already produced by an earlier run" if report.resumed else ""),
        f"LLM: {spend.calls} calls, {spend.prompt_tokens + spend.completion_tokens} tokens, {cost}",
    ]
    if report.dropped:
        lines.insert(
            2, "dropped: " + ", ".join(f"{n} {why}" for why, n in report.dropped.most_common())
        )
    where = f"written to {out}" if out else f"{report.produced} task records produced"
    lines.append(f"{where}; stopped: {report.stop_reason} ({report.stop_detail or 'all read'})")
    for line in lines:
        click.echo(line)
