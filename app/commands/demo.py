"""`adp demo`: the whole pipeline on one machine, started and stopped by one command.

Kafka (a fresh `demo` cluster) -> the LLM endpoint -> the aggregator and one runtime per task
type in the file -> `adp produce` -> wait until every task has a trajectory file -> summary ->
the flywheel grows --generations of new tasks from the verified ones (demo_flywheel.py) ->
stop everything this command started (with --keep-running: after Ctrl-C, so a trainer can
submit rollouts and consume groups meanwhile, docs/training.md). Each child logs to
$ADP_HOME/logs/demo-*.log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adp.app.commands import demo_flywheel
from adp.core.process import ChildProcesses, ProcessError
from adp.core.settings import settings
from adp.schemas.contracts import verdict_status
from adp.streams.kafka.broker.server import BrokerError, KafkaCluster

console = Console(stderr=True)
ADP = [sys.executable, "-m", "adp"]
SITE_PORT = 8090  # the sample tasks' start_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _task_ids(path: Path) -> dict[str, str]:
    """key -> task_type of every sample of the file's valid lines (one key per task unless it
    asks for k samples; `adp produce` reports the bad lines)."""
    from adp.connectors.tasks_source import read_tasks
    from adp.schemas.contracts import sample_key

    return {
        sample_key(item.task.task_id, i): item.task.task_type
        for item in read_tasks(path)
        if item.task
        for i in range(item.task.samples)
    }


@click.command("demo")
@click.option(
    "--tasks",
    "tasks_file",
    default="tasks.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tasks to run.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Trajectory folder [ADP_OUTPUT_DIR or output/trajectories].",
)
@click.option(
    "--llm",
    type=click.Choice(["auto", "embedded", "stub"]),
    default="auto",
    show_default=True,
    help="auto: a provider from the environment (GEMINI/DEEPSEEK/OPENAI keys, "
    "ADP_LLM_BASE_URL, ADP_VLLM_URL), else the embedded local model. "
    "stub: the scripted test server (fast, no model).",
)
@click.option(
    "--stub-script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --llm stub: the stub's script (examples/synthesis/stub-script.json plays the "
    "agent and the synthesizer for examples/synthesis/seeds.jsonl).",
)
@click.option(
    "--generations",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Generations of new tasks the flywheel grows from the verified trajectories "
    "(adp synthesize kafka --follow); 0: none.",
)
@click.option(
    "--budget-usd",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop synthesizing once its LLM calls cost this much (ADP_PRICES prices them).",
)
@click.option("--concurrency", default=2, show_default=True, help="Tasks at once per runtime.")
@click.option(
    "--timeout", default=1800.0, show_default=True, help="Seconds to wait for all trajectories."
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="After the summary keep Kafka, the LLM, the runtimes and the aggregator up until "
    "Ctrl-C: new tasks (adp produce, adp.client.submit) run too.",
)
def demo_command(
    tasks_file: Path,
    out: Path | None,
    llm: str,
    stub_script: Path | None,
    generations: int,
    budget_usd: float | None,
    concurrency: int,
    timeout: float,
    keep_running: bool,
) -> None:
    """Run TASKS end to end on a fresh local Kafka and print one row per trajectory, then let
    the flywheel grow new tasks from the verified ones and show them with their lineage."""
    if stub_script is not None and llm != "stub":
        raise click.UsageError("--stub-script goes with --llm stub")
    s = settings()
    out = (out or s.output_dir).resolve()
    if not tasks_file.exists():
        raise click.ClickException(f"{tasks_file} not found")
    wanted = _task_ids(tasks_file)
    if not wanted:
        raise click.ClickException(f"{tasks_file} has no valid task")
    out.mkdir(parents=True, exist_ok=True)
    for key in wanted:  # a previous run's files must not count as this run's results
        (out / f"{key}.json").unlink(missing_ok=True)

    env = dict(os.environ, ADP_HOME=str(s.home))
    cluster = KafkaCluster(name="demo")
    env["ADP_BOOTSTRAP"] = cluster.bootstrap
    # the demo's own cluster is plaintext, whatever the environment says about other clusters
    env["ADP_SECURITY_PROTOCOL"] = "PLAINTEXT"
    env.pop("ADP_CONFIG", None)
    started_at = time.monotonic()
    grow = AfterTheRun(generations, budget_usd, stub_script, keep_running)
    try:
        done = _run(tasks_file, out, llm, concurrency, timeout, wanted, env, cluster, s, grow)
    except (ProcessError, BrokerError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"demo took {time.monotonic() - started_at:.0f}s; logs in {s.log_dir}")
    if len(done) < len(wanted):
        sys.exit(1)


@dataclass(frozen=True)
class AfterTheRun:
    """What the demo does once the tasks have their trajectories."""

    generations: int  # the flywheel grows this many generations of synthesized tasks
    budget_usd: float | None
    stub_script: Path | None
    keep_running: bool  # then stays up for a trainer until Ctrl-C / SIGTERM


def _run(tasks_file, out, llm, concurrency, timeout, wanted, env, cluster, s, grow) -> set[str]:
    """Start everything, produce, wait, summarise; stop what it started on the way out."""
    with ExitStack() as cleanup:
        if any(n.running() for n in cluster.nodes):
            cluster.down()
        console.print(f"[bold]Kafka[/] starting a fresh demo cluster at {cluster.bootstrap}")
        cluster.wipe()
        cleanup.callback(cluster.down)
        cluster.up()

        children = ChildProcesses(s.log_dir, env, prefix="demo-")
        cleanup.callback(children.stop)
        _start_llm(llm, children, env, cleanup, grow.stub_script)
        if set(wanted.values()) & {"web", "reasoning"}:
            # the sample web and reasoning tasks browse the shipped site/, no internet needed
            from adp.app.site_server import SiteServer

            site = SiteServer(port=SITE_PORT)
            console.print(f"[bold]Site[/] serving site/ at {site.start()}")
            cleanup.callback(site.stop)
            # the browsers may reach it (the egress policy keeps them off loopback otherwise)
            allowed = env.get("ADP_BROWSER_EGRESS_ALLOW", "")
            env["ADP_BROWSER_EGRESS_ALLOW"] = ",".join(
                filter(None, [allowed, f"127.0.0.1:{SITE_PORT}"])
            )

        children.start("aggregator", [*ADP, "aggregate", "--out", str(out)])
        for task_type in sorted(set(wanted.values())):
            children.start(
                f"runtime-{task_type}",
                [*ADP, "runtime", task_type, "--concurrency", str(concurrency)],
            )

        console.print(f"[bold]Producing[/] {tasks_file}")
        produced = subprocess.run([*ADP, "produce", str(tasks_file)], env=env)
        if produced.returncode not in (0, 1):
            raise click.ClickException(f"adp produce failed (exit {produced.returncode})")

        started = time.monotonic()
        done = _wait_for_files(out, wanted, children, timeout)
        passed = _print_summary(out, wanted, done)
        if grow.generations and passed:
            left = max(60.0, timeout - (time.monotonic() - started))
            demo_flywheel.grow(out, env, s.log_dir, grow.generations, grow.budget_usd, left)
        elif grow.generations:
            console.print("no trajectory passed its verifier: nothing for the flywheel to grow")
        if grow.keep_running:
            _keep_running(env, children)
        console.print("stopping what the demo started")
        return done


def _keep_running(env: dict[str, str], children: ChildProcesses) -> None:
    console.print(
        f"[bold]Running[/] Kafka at {env['ADP_BOOTSTRAP']}: the runtimes and the aggregator "
        "take new tasks (adp produce, adp.client.submit) until Ctrl-C"
    )
    import signal

    def stop(signum: int, _frame: object) -> None:  # SIGTERM stops it as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            children.check()
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_llm(
    llm: str,
    children: ChildProcesses,
    env: dict[str, str],
    cleanup: ExitStack,
    script: Path | None = None,
) -> None:
    from adp.runtimes.llm.providers import resolve_providers

    if llm == "stub":
        port = _free_port()
        scripted = ["--script", str(script.resolve())] if script else []
        children.start("llm-stub", [*ADP, "llm-stub", "--port", str(port), *scripted])
        env["ADP_LLM_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        env["ADP_LLM_MODEL"] = "stub"
        env.setdefault("ADP_LLM_TOKENS", "on")  # the stub returns token ids like vLLM does
        _wait_http(f"http://127.0.0.1:{port}/v1/models", children)
        console.print(f"[bold]LLM[/] scripted stub at {env['ADP_LLM_BASE_URL']}")
        return
    first = resolve_providers(env)[0]
    if llm == "auto" and first.name != "local":
        console.print(f"[bold]LLM[/] {first.name} ({first.model}) from the environment")
        return
    console.print("[bold]LLM[/] starting the embedded SmolLM2-135M-Instruct (llama.cpp)")
    if subprocess.run([*ADP, "llm", "up"], env=env).returncode != 0:
        raise click.ClickException("the embedded LLM server did not start (see above)")
    cleanup.callback(subprocess.run, [*ADP, "llm", "down"], env=env)
    env["ADP_LLM_PROVIDER"] = "local"


def _wait_http(url: str, children: ChildProcesses, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout:.0f}s")


def _wait_for_files(
    out: Path, wanted: dict[str, str], children: ChildProcesses, timeout: float
) -> set[str]:
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]trajectories"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("", total=len(wanted))
        while len(done) < len(wanted):
            if time.monotonic() > deadline:
                missing = sorted(set(wanted) - done)
                console.print(
                    f"[red]timed out after {timeout:.0f}s; no trajectory yet for: "
                    + ", ".join(missing[:20])
                )
                break
            children.check()
            done |= {t for t in wanted if (out / f"{t}.json").exists()}
            progress.update(bar, completed=len(done))
            time.sleep(0.5)
    return done


VERDICT_STYLE = {
    "passed": "[green]passed",
    "failed": "[red]failed",
    "error": "[yellow]could not verify",
    "unverified": "[dim]unverified",
}


def _print_summary(out: Path, wanted: dict[str, str], done: set[str]) -> int:
    """The table of trajectories; returns how many a verifier passed."""
    table = Table(title=f"Trajectories in {out}")
    for col in ("task", "type", "claimed", "verified", "steps", "duration s", "final result"):
        table.add_column(col, overflow="fold")
    verdicts: dict[str, int] = {}
    claimed = 0
    for key in wanted:
        if key not in done:
            table.add_row(key, wanted[key], "[red]missing", "-", "-", "-", "-")
            continue
        t = json.loads((out / f"{key}.json").read_text())
        claim = t.get("claimed_success", t["success"])
        claimed += bool(claim)
        verdict = verdict_status(t.get("verification"))
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        table.add_row(
            key,
            t["task_type"],
            "yes" if claim else "[red]no",
            VERDICT_STYLE[verdict],
            str(len(t["steps"])),
            f"{t['total_duration']:.1f}",
            (t["final_result"] or t["metadata"].get("error") or "")[:60],
        )
    Console().print(table)
    ok = sum(1 for t in wanted if t in done)
    judged = sum(n for v, n in verdicts.items() if v != "unverified")
    console.print(
        f"{ok}/{len(wanted)} trajectories written; the agent claimed success in "
        f"{claimed}, a verifier passed {verdicts.get('passed', 0)} of the {judged} "
        f"with a verifier ({verdicts.get('failed', 0)} failed, "
        f"{verdicts.get('error', 0)} could not be verified)"
    )
    return verdicts.get("passed", 0)
