"""`adp status`: the numbers of streams/inspection/status.py's StatusReader as a table, a totals
line, pass@k per task type and model (per task with --pass-at-k) and, with --watch, progress
bars."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import asdict

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adp.app.commands.options import kafka_options
from adp.connectors.export.passk import describe
from adp.core.settings import Settings
from adp.streams.inspection.status import StatusReader, TypeStatus


def render_table(rows: list[TypeStatus]) -> Table:
    from rich import box

    # compact, so that the verified column still fits 80 characters
    table = Table(title="adp status", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    verified = any(r.verified is not None for r in rows)
    for col in (
        "task type",
        "produced",
        "pending",
        "running",
        "finished",
        "failed",
        *(("verified",) if verified else ()),
        "runtimes",
    ):
        table.add_column(col, justify="right" if col != "task type" else "left")
    for r in rows:
        table.add_row(
            r.task_type,
            str(r.produced),
            str(r.pending),
            str(r.running),
            str(r.finished),
            f"[red]{r.failed}[/]" if r.failed else "0",
            *((f"{r.verified or 0}/{r.checked or 0}",) if verified else ()),
            f"{r.members} [yellow]({len(r.paused)} paused)[/]" if r.paused else str(r.members),
        )
        # the priority lanes under their type, once any lane but the default one was used
        if any(lane.produced for name, lane in r.lanes.items() if name != "default"):
            for name, lane in r.lanes.items():
                table.add_row(
                    f"[dim]  {name} lane[/]",
                    f"[dim]{lane.produced}[/]",
                    f"[dim]{lane.pending}[/]",
                    f"[dim]{lane.running}[/]",
                    "",
                    "",
                    *(("",) if verified else ()),
                    "",
                )
    return table


def _usd(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:,.4f}"


def totals(rows: list[TypeStatus]) -> str:
    """One line: verdicts, and the token and cost totals of every finished trajectory."""
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    passed = sum(r.verified or 0 for r in rows)
    return (
        f"verdicts: {passed} passed, {sum(r.checked or 0 for r in rows) - passed} failed, "
        f"{sum(r.unverifiable for r in rows)} could not be verified, "
        f"{sum(r.unverified for r in rows)} unverified | tokens: "
        f"{sum(r.prompt_tokens for r in rows):,} prompt + "
        f"{sum(r.completion_tokens for r in rows):,} completion | cost: "
        f"{_usd(sum(costs)) if costs else '- (no priced model; ADP_PRICES)'}"
        f" | LLM calls with token ids: {sum(r.token_calls for r in rows)} of "
        f"{sum(r.llm_calls for r in rows)}"
    )


def pass_lines(rows: list[TypeStatus], by_model: dict) -> list[str]:
    """pass@k (unbiased estimator) per task type and per model, where samples were judged."""
    lines = [f"pass@k {r.task_type}: {describe(r.pass_at_k)}" for r in rows if r.pass_at_k]
    return lines + [f"pass@k model {m}: {describe(r)}" for m, r in by_model.items() if r]


def render_tasks(per_task: dict[str, dict[str, float]]) -> Table:
    from rich import box

    ks = sorted({int(k) for r in per_task.values() for k in r})
    table = Table(title="pass@k per task", box=box.SIMPLE_HEAD)
    table.add_column("task")
    for k in ks:
        table.add_column(f"pass@{k}", justify="right")
    for task, r in per_task.items():
        table.add_row(task, *(f"{r[str(k)]:.2f}" if str(k) in r else "" for k in ks))
    return table


def pauses(rows: list[TypeStatus], now: float | None = None) -> list[str]:
    """One line per runtime paused by an unavailable dependency: who, since when, why."""
    now = time.time() if now is None else now
    return [
        f"paused: {p.runtime} since {time.strftime('%H:%M:%S', time.localtime(p.since))} "
        f"({_ago(now - p.since)}): {p.why}"
        for r in rows
        for p in r.paused
    ]


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def render_progress(rows: list[TypeStatus]) -> Progress:
    progress = Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
    )
    for r in rows:
        if r.produced:
            progress.add_task(
                r.task_type,
                total=r.produced,
                completed=r.finished,
                note=f"{r.running} running, {r.failed} failed",
            )
    return progress


@click.command("status")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C, with progress bars.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option(
    "--pass-at-k",
    "per_task",
    is_flag=True,
    help="Print pass@k per task, type and model (with --json: one object of the three).",
)
@kafka_options
def status_command(
    watch: bool, interval: float, as_json: bool, per_task: bool, conf: Settings
) -> None:
    """Per task type: produced, pending (group lag), running, finished, failed, verified
    (passed of judged, once verdicts exist), runtimes; produced, pending and running also per
    priority lane (high, default, low) once tasks went to a lane other than the default one.
    Below the table the totals of verdicts, tokens and cost (priced models only: ADP_PRICES)
    and of the LLM calls that carry token ids, pass@k (the unbiased estimator over each task's
    judged samples) per task type and per model, and each runtime paused by an unavailable
    dependency (LLM endpoint, sandbox, browser), since when and why; --json has them per type."""

    async def main() -> None:
        async with StatusReader(conf) as reader:
            if not watch:
                rows = await reader.read()
                if per_task:
                    show_pass_at_k(reader, as_json)
                    return
                if as_json:
                    click.echo(json.dumps([asdict(r) for r in rows]))
                else:
                    Console().print(render_table(rows))
                    click.echo(totals(rows))
                    for line in [*pass_lines(rows, reader.pass_at_k("model")), *pauses(rows)]:
                        click.echo(line)
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            with Live(refresh_per_second=4) as live:
                while not stop.is_set():
                    rows = await reader.read()
                    table, bars = render_table(rows), render_progress(rows)
                    passk = pass_lines(rows, reader.pass_at_k("model"))
                    live.update(Group(table, totals(rows), *passk, *pauses(rows), bars))
                    try:
                        await asyncio.wait_for(stop.wait(), interval)
                    except TimeoutError:
                        pass

    asyncio.run(main())


def show_pass_at_k(reader: StatusReader, as_json: bool) -> None:
    report = {by: reader.pass_at_k(by) for by in ("type", "model", "task")}
    if as_json:
        click.echo(
            json.dumps(
                {"types": report["type"], "models": report["model"], "tasks": report["task"]}
            )
        )
        return
    Console().print(render_tasks(report["task"]))
    for name, r in report["type"].items():
        click.echo(f"pass@k {name}: {describe(r)}")
    for name, r in report["model"].items():
        click.echo(f"pass@k model {name}: {describe(r)}")
