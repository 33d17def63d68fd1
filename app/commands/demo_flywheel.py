"""The demo's last act: the flywheel grows new tasks from the trajectories the demo just made.

`adp synthesize kafka --follow --max-generations N` runs beside the demo's runtimes and
aggregator until it stops by itself (generation N reached and every task back, or nothing more
grows), then the synthesized tasks and their trajectories are shown with their lineage. What a
small model manages is shown as it is: proposals it could not write count as dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from adp.schemas import lineage
from adp.schemas.contracts import verdict_status

console = Console(stderr=True)
ADP = [sys.executable, "-m", "adp"]


def grow(
    out: Path, env: dict[str, str], log_dir: Path, generations: int, budget: float | None, timeout
) -> None:
    """Run the flywheel on the demo's cluster and show what it made."""
    decisions = log_dir / "demo-synthesis.jsonl"
    command = [*ADP, "synthesize", "kafka", "--follow", "--json", "--report", str(decisions)]
    command += ["--max-generations", str(generations)]
    if budget is not None:
        command += ["--budget-usd", str(budget)]
    console.print(
        f"[bold]Synthesizing[/] up to {generations} generation(s) of new tasks from the "
        "verified trajectories (adp synthesize kafka --follow)"
    )
    began = time.monotonic()
    report = _run(command, env, log_dir / "demo-synthesize.log", decisions, timeout)
    accepted = [d for d in _read(decisions) if d["outcome"] == "accepted"]
    _wait_for(out, {d["task_id"] for d in accepted}, deadline=time.monotonic() + 60)
    _print(out, accepted, report, time.monotonic() - began)


def _run(command, env, log: Path, decisions: Path, timeout: float) -> dict:
    with open(log, "wb") as err, console.status("synthesizing") as status:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.terminate()
                proc.wait(60)
                raise click.ClickException(f"adp synthesize did not stop within {timeout:.0f}s")
            made = _read(decisions)
            status.update(
                f"synthesizing: {sum(d['outcome'] == 'accepted' for d in made)} tasks accepted "
                f"of {len(made)} candidates"
            )
            time.sleep(0.5)
        stdout = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise click.ClickException(f"adp synthesize failed (exit {proc.returncode}); see {log}")
    return json.loads(stdout.strip().splitlines()[-1])


def _read(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.endswith("}")]  # a last line half written


def _wait_for(out: Path, task_ids: set[str], deadline: float) -> None:
    """Every task has come back when the flywheel stops; the file sink may lag a moment."""
    while time.monotonic() < deadline and not all((out / f"{t}.json").exists() for t in task_ids):
        time.sleep(0.5)


def _print(out: Path, accepted: list[dict], report: dict, took: float) -> None:
    table = Table(title="Synthesized tasks (adp synthesize): lineage and trajectory")
    for col in ("generation", "method", "task", "from", "verified", "description"):
        table.add_column(col, overflow="fold")
    passed: dict[int, list[int]] = {}
    for d in sorted(accepted, key=lambda d: (d["generation"], d["parent"], d["method"])):
        path = out / f"{d['task_id']}.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        status = verdict_status(doc.get("verification")) if doc else "missing"
        passed.setdefault(d["generation"], []).append(status == "passed")
        parent = lineage.parent_ids(doc)[0] if doc else d["parent"]
        table.add_row(
            str(d["generation"]), d["method"], d["task_id"], parent, status, d["question"][:70]
        )
    if accepted:  # an empty table says less than the line below
        Console().print(table)
    rates = ", ".join(
        f"generation {g}: {sum(v)}/{len(v)} passed" for g, v in sorted(passed.items())
    )
    dropped = ", ".join(f"{n} {why}" for why, n in report["candidates"]["dropped"].items())
    cost = f"${report['cost_usd']:.4f}" if report["cost_usd"] is not None else "not priced"
    console.print(
        f"the flywheel grew {len(accepted)} new tasks in {took:.0f}s ({rates or 'none'}); "
        f"dropped: {dropped or 'none'}; {report['llm_calls']} synthesis LLM calls, {cost}; "
        f"stopped: {report['stop']['reason']} ({report['stop']['detail']})"
    )
