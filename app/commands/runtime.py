"""`adp runtime NAME`: run one runtime as a member of its consumer group."""

from __future__ import annotations

import asyncio
import inspect
import signal

import click

from adp.app.commands.options import kafka_options
from adp.core.process import exit_if_stuck, watch_children_with_pidfd
from adp.core.settings import Settings
from adp.runtimes.base import RuntimeContext
from adp.runtimes.registry import UnknownRuntime, available, load_runtime
from adp.runtimes.verify import VerifyContext
from adp.streams.kafka.topics import LANES
from adp.streams.runtime.breaker import OutageBreaker
from adp.streams.runtime.lanes import DEFAULT_MIN_SHARE, check_min_share
from adp.streams.runtime.worker import RuntimeWorker, default_runtime_id


@click.command("runtime")
@click.argument("name")
@click.option(
    "--concurrency", "-c", default=4, show_default=True, help="Tasks run at once in this process."
)
@click.option("--runtime-id", default=None, help="Name in events and logs [<type>-<host>-<pid>].")
@click.option("--group", default=None, help="Consumer group [adp-runtime-<type>].")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Port of /metrics and /health [ADP_METRICS_PORT or 8001, next free]; 0: off.",
)
@click.option(
    "--min-share",
    type=float,
    default=DEFAULT_MIN_SHARE,
    show_default=True,
    envvar="ADP_MIN_SHARE",
    show_envvar=True,
    help="Starvation guard: while higher priority lanes have work, each lower lane "
    "with work still gets at least this share of task starts (0: strict "
    "priority; at most 1/3).",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="On SIGTERM/Ctrl-C: seconds running tasks get to finish; the rest are redone "
    "by another member.",
)
@click.option(
    "--max-outage",
    type=click.FloatRange(0),
    default=None,
    help="Seconds a task may wait, paused, for an unavailable LLM endpoint, sandbox or "
    "browser before it ends as an `infrastructure` failure [ADP_MAX_OUTAGE or 3600; 0: at "
    "the first outage]. While a dependency is down the runtime starts no task and probes "
    "it with backoff.",
)
@kafka_options
def runtime_command(
    name: str,
    concurrency: int,
    runtime_id: str | None,
    group: str | None,
    metrics_port: int | None,
    min_share: float,
    drain_timeout: float,
    max_outage: float | None,
    conf: Settings,
) -> None:
    """Run the runtime NAME (code, web, reasoning, or an installed plugin).

    Joins consumer group adp-runtime-<type> on its type's priority lanes: adp.tasks.<type>.high
    (priority 8-10), adp.tasks.<type> (4-7) and adp.tasks.<type>.low (1-3). A free slot takes
    the next task from the highest lane with work, except that each lower lane gets at least
    --min-share of the starts. Start more processes, here or on other hosts, to share the
    partitions. Every step goes to adp.steps as it happens.
    Stops cleanly on Ctrl-C / SIGTERM: running tasks get --drain-timeout seconds to finish, the
    rest are redone by another member; the process ends soon after even when the broker is
    gone.
    An outage of the LLM endpoint (every configured provider unreachable, refusing or
    overloaded past its retries), of the sandbox or of the browser pauses the runtime instead
    of failing tasks: /health says degraded, `adp status` shows it, and the tasks that met it
    run again from the start once it answers (docs/outages.md)."""
    try:
        check_min_share(min_share, len(LANES))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--min-share") from exc
    try:
        runtime_cls = load_runtime(name)
    except UnknownRuntime as exc:
        raise click.ClickException(str(exc)) from exc
    from adp.core.limit import AdaptiveLimit
    from adp.runtimes.llm.client import build_model

    task_type = runtime_cls.task_type
    rid = runtime_id or default_runtime_id(name)
    limit = AdaptiveLimit(initial=concurrency, maximum=concurrency)
    model = build_model({"limit": limit, "connections": concurrency})
    runtime = runtime_cls(RuntimeContext(runtime_id=rid, model=model))
    # a task's verifier judges with the same provider chain the agent used
    worker = RuntimeWorker(
        runtime,
        task_type,
        conf,
        concurrency=concurrency,
        runtime_id=rid,
        group_id=group,
        limit=limit,
        min_share=min_share,
        verify_context=VerifyContext(model_factory=lambda: model),
        outages=OutageBreaker.from_settings(task_type, rid, max_outage),
    )

    async def main() -> None:
        stop = asyncio.Event()

        def on_signal() -> None:
            if not stop.is_set():  # the worker drains; this ends a shutdown stuck on a broker
                exit_if_stuck(drain_timeout + 15, f"runtime {rid}")
            stop.set()

        watch_children_with_pidfd()  # no waitpid thread per sandbox run (Python 3.11)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            await worker.run(
                stop,
                drain_timeout=drain_timeout,
                metrics_port=conf.metrics_port if metrics_port is None else metrics_port,
            )
        finally:
            await model.aclose()  # its HTTP sessions belong to this loop

    asyncio.run(main())


runtime_command.help = (
    inspect.cleandoc(runtime_command.help)
    + "\n\nInstalled runtimes: "
    + ", ".join(sorted(available()))
)
