"""Prometheus metrics and the /health endpoint of every long-running component.

All metric objects are defined here, once per process, so a name means one thing everywhere
(README "Metrics" lists them). `serve()` starts a small aiohttp server with /metrics and
/health on ADP_METRICS_PORT (default 8001); when that port is taken by another component on
the same host it tries the next ones, so several processes per host just work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

TASKS_RECEIVED = Counter(
    "adp_tasks_received_total", "Tasks taken from Kafka (started)", ["task_type", "lane"]
)
TASKS_FINISHED = Counter(
    "adp_tasks_finished_total",
    "Tasks finished (finished event acked)",
    ["task_type", "outcome", "error_type"],
)
TASKS_IN_FLIGHT = Gauge("adp_tasks_in_flight", "Tasks running now", ["task_type"])
CONCURRENCY_LIMIT = Gauge(
    "adp_runtime_concurrency_limit",
    "Tasks a runtime process takes at once now (lowered on LLM 429s)",
    ["task_type"],
)
RUNTIME_PAUSED = Gauge(
    "adp_runtime_paused",
    "1 while a runtime process starts no task because a dependency it needs is unavailable "
    "(LLM endpoint, sandbox backend, browser)",
    ["task_type"],
)
RUNTIME_OUTAGE_SECONDS = Counter(
    "adp_runtime_outage_seconds_total",
    "Seconds runtime processes spent paused by an unavailable dependency",
    ["task_type", "dependency"],
)
CONSUMER_LAG = Gauge(
    "adp_consumer_lag", "Messages behind the end of the assigned partitions", ["task_type", "lane"]
)
TASK_WAIT = Histogram(
    "adp_task_wait_seconds",
    "Time from a task's produce to its start, per priority lane",
    ["task_type", "lane"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
STEP_DURATION = Histogram(
    "adp_step_duration_seconds",
    "Duration of one agent step",
    ["task_type", "action_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
ARTIFACT_BYTES = Counter(
    "adp_artifact_bytes_total", "Bytes of files steps wrote, sent to adp.artifacts", ["task_type"]
)
DLQ_MESSAGES = Counter("adp_dlq_messages_total", "Messages sent to adp.dlq", ["component"])
SINK_WRITES = Counter("adp_sink_writes_total", "Trajectory writes by sinks", ["sink", "outcome"])
# The aggregator: events in, trajectories out, what it dropped, and how long a finished task
# waits for its file (finished event made -> trajectory stored by the sink).
AGGREGATOR_EVENTS = Counter(
    "adp_aggregator_events_total", "Step events the aggregator consumed from adp.steps"
)
TRAJECTORIES = Counter(
    "adp_trajectories_total", "Trajectories assembled by the aggregator", ["task_type", "success"]
)
AGGREGATOR_BATCH_EVENTS = Histogram(
    "adp_aggregator_batch_events",
    "Step events per assemble batch: small batches under load mean more table writes per event",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
AGGREGATOR_BATCH_SECONDS = Histogram(
    "adp_aggregator_batch_seconds",
    "Time to assemble one batch and get its trajectories, "
    "dead letters and table writes acknowledged",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AGGREGATOR_TABLE_WRITES = Counter(
    "adp_aggregator_table_writes_total", "Records the aggregator wrote to its table's changelog"
)
LLM_REQUESTS = Counter(
    "adp_llm_requests_total", "LLM HTTP requests by outcome", ["provider", "outcome"]
)
LLM_LATENCY = Histogram(
    "adp_llm_latency_seconds",
    "Latency of successful LLM requests",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
LLM_TOKENS = Counter("adp_llm_tokens_total", "LLM tokens by kind", ["provider", "kind"])
LLM_COST = Counter(
    "adp_llm_cost_usd_total",
    "Price of LLM calls in USD from the price table (ADP_PRICES); unpriced models "
    "count tokens only",
    ["provider", "model"],
)
VERDICTS = Counter(
    "adp_verdicts_total",
    "Trajectories assembled, by verdict "
    "(passed, failed, error: the verifier could not run, unverified)",
    ["task_type", "status"],
)
VERIFICATIONS = Counter(
    "adp_verifications_total",
    "Verifier runs by the runtimes and adp verify",
    ["verifier", "status"],
)
CACHE_HITS = Counter("adp_llm_cache_hits_total", "LLM responses served from the cache")
CACHE_MISSES = Counter("adp_llm_cache_misses_total", "LLM cache lookups that found nothing")
AGGREGATOR_DROPPED = Counter(
    "adp_aggregator_dropped_total",
    "Events or attempts the aggregator dropped: duplicate "
    "events, late events (task already done), superseded / expired / inconsistent attempts",
    ["reason"],
)
AGGREGATOR_RECOVERED = Counter(
    "adp_aggregator_recovered_records_total",
    "adp.steps records the consumer skipped that the aggregator read back itself "
    "(streams/aggregator/faust_guard.py)",
)
SINK_LATENCY = Histogram(
    "adp_sink_latency_seconds",
    "From a task's finished event to its trajectory stored by the aggregator's sink",
    ["sink"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SINK_UNAVAILABLE = Gauge(
    "adp_sink_unavailable",
    "1 while the aggregator's sink cannot be written (an outage: it holds the batch and retries)",
    ["sink"],
)
SINK_OUTAGE_SECONDS = Counter(
    "adp_sink_outage_seconds_total",
    "Seconds the aggregator waited for a sink that could not be written",
    ["sink"],
)


@dataclass
class Health:
    """What /health reports. Components update it; `checks` are live checks (e.g. broker): a
    failing one makes the component unhealthy (503). `degraded` callables return why the
    component is alive but held back by something outside it (a dependency's outage), or None:
    /health then answers 200 with status "degraded" and the reasons, and the stale-progress
    check stays quiet, since the reason no progress is made is known and a restart would not
    help."""

    component: str
    stale_after: float = 300.0  # no progress for this long while work is pending -> unhealthy
    started: float = field(default_factory=time.time)
    last_progress: float = field(default_factory=time.time)
    details: dict = field(default_factory=dict)
    checks: list[Callable[[], tuple[bool, str]]] = field(default_factory=list)
    busy: Callable[[], bool] = lambda: False  # is there work that should be making progress?
    degraded: list[Callable[[], str | None]] = field(default_factory=list)

    def progress(self) -> None:
        self.last_progress = time.time()

    def report(self) -> tuple[bool, dict]:
        problems = []
        for check in self.checks:
            ok, why = check()
            if not ok:
                problems.append(why)
        held_back = [why for why in (d() for d in self.degraded) if why]
        idle_for = time.time() - self.last_progress
        if self.busy() and idle_for > self.stale_after and not held_back:
            problems.append(f"no progress for {idle_for:.0f}s with work pending")
        body = {
            "component": self.component,
            "healthy": not problems,
            "status": "unhealthy" if problems else "degraded" if held_back else "ok",
            "problems": problems,
            "degraded": held_back,
            "uptime_s": round(time.time() - self.started, 1),
            "last_progress_s_ago": round(idle_for, 1),
            **self.details,
        }
        return not problems, body


async def serve(
    health: Health, port: int | None = None, host: str = "0.0.0.0", tries: int = 20
) -> web.AppRunner | None:
    """Serve /metrics and /health. port None -> ADP_METRICS_PORT or 8001; 0 disables."""
    from aiohttp import web  # only processes that serve: aiohttp costs ~0.3 s to import

    from adp.core.settings import settings

    port = settings().metrics_port if port is None else port
    if port == 0:
        return None

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok, body = health.report()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/health", healthz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for candidate in range(port, port + tries):
        try:
            await web.TCPSite(runner, host, candidate).start()
        except OSError:
            continue
        health.details["metrics_port"] = candidate
        log.info("%s serves /metrics and /health on port %d", health.component, candidate)
        return runner
    log.warning("no free metrics port in %d..%d; metrics are not served", port, port + tries - 1)
    await runner.cleanup()
    return None
