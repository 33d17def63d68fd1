"""An LLM endpoint restart in the middle of a run: the stub LLM (200 ms latency, one call per
task) is killed while a code runtime at concurrency 16 works through a backlog, and started
again on the same port some seconds later. Plotted: tasks finished per second, with the
endpoint's up/down state. Figures: the throughput after the restart against the throughput
before it (the runtime resumes by itself, at full speed), how long after the restart the first
task finished again (the runtime's backoff: ADP_OUTAGE_BACKOFF_MIN/MAX, here 1 s to 4 s), and
the tasks that ended as failures over the outage (held to 0: the runtime pauses, it does not
burn its backlog into failed trajectories)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from adp.core.process import http_ok
from adp.streams.kafka.broker.server import free_port_block
from bench.core import Bench
from bench.tasks import produce_tasks

KEY = "m"
NAME = "outage"
TITLE = "LLM endpoint restart: throughput dip and recovery"
LATENCY = 0.2
CONCURRENCY = 16
SCRIPT = [{"replies": ["FINAL ANSWER: 42"]}]
EVERY = 0.5  # seconds between samples


def finished(metrics_url: str) -> tuple[float, float]:
    """(tasks finished, of which failed) by the runtime so far, from its /metrics."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0, 0.0
    done = failed = 0.0
    for line in text.splitlines():
        if line.startswith("adp_tasks_finished_total{"):
            value = float(line.rsplit(" ", 1)[1])
            done += value
            failed += value if 'outcome="failure"' in line else 0.0
    return done, failed


class Endpoint:
    """The stub LLM on a port of its own, killed and started again there."""

    def __init__(self, bench: Bench) -> None:
        self.bench, self.port, self.starts = bench, free_port_block(), 0
        self.script = bench.work / "m-stub-script.json"
        self.script.write_text(json.dumps(SCRIPT))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.starts += 1
        args = ["llm-stub", "--port", str(self.port), "--latency", str(LATENCY)]
        self.bench.start(f"m-stub-{self.starts}", [*args, "--script", str(self.script)])
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{self.port}/health"):
            self.bench.children.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the stub LLM did not start")
            time.sleep(0.1)

    def kill(self) -> None:
        self.bench.stop(f"m-stub-{self.starts}", grace=0)


async def run(bench: Bench) -> None:
    before, down, after = (6.0, 4.0, 10.0) if bench.quick else (15.0, 10.0, 25.0)
    endpoint, metrics_port = Endpoint(bench), free_port_block()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    endpoint.start()
    args = ["runtime", "code", "-c", str(CONCURRENCY), "--metrics-port", str(metrics_port)]
    env = {
        "ADP_LLM_BASE_URL": endpoint.url,
        "ADP_OUTAGE_BACKOFF_MIN": "1",
        "ADP_OUTAGE_BACKOFF_MAX": "4",
    }
    bench.start("m-runtime", args, env=env)
    # more than the ideal rate can finish in the whole window: the backlog never runs dry
    produce_tasks(bench, "outage", int(CONCURRENCY / LATENCY * (before + after) * 1.2))
    while finished(metrics_url)[0] < 1:  # the runtime is up and at work
        bench.children.check()
        await asyncio.sleep(0.2)
    xs, done, up = await _observe(bench, endpoint, metrics_url, before, down, after)
    _, failed = finished(metrics_url)
    bench.stop("m-runtime")
    endpoint.kill()
    _report(bench, xs, done, up, before, down, failed)


async def _observe(
    bench: Bench, endpoint: Endpoint, metrics_url: str, before: float, down: float, after: float
) -> tuple[list[float], list[float], list[bool]]:
    """Sample tasks finished every EVERY seconds; kill the endpoint at `before`, start it again
    `down` seconds later."""
    began = time.monotonic()
    xs: list[float] = []
    done: list[float] = []
    up: list[bool] = []
    state = "up"
    while (t := time.monotonic() - began) < before + down + after:
        bench.children.check()
        if state == "up" and t >= before:
            endpoint.kill()
            state = "down"
        elif state == "down" and t >= before + down:
            endpoint.start()
            state = "back"
        xs.append(t)
        done.append(finished(metrics_url)[0])
        up.append(state != "down")
        await asyncio.sleep(EVERY)
    return xs, done, up


def _report(
    bench: Bench,
    xs: list[float],
    done: list[float],
    up: list[bool],
    before: float,
    down: float,
    failed: float,
) -> None:
    rates = [0.0] + [(b - a) / max(t1 - t0, 1e-6) for t0, t1, a, b in _pairs(xs, done)]
    back = before + down
    # before: its second half (the first is the runtime warming up); after: from 2 s past the
    # first task finished again (the probe's backoff and the re-run tasks are the dip)
    rate_before = _slope([(x, y) for x, y in zip(xs, done) if before / 2 <= x < before])
    post = [(x, y) for x, y in zip(xs, done) if x >= back]
    resumed = next((x for x, y in post if y > post[0][1]), None) if post else None
    settled = [(x, y) for x, y in post if resumed is not None and x >= resumed + 2.0]
    rate_after = _slope(settled)
    bench.figure(KEY, "tasks/s before the restart", rate_before, "tasks/s", "ideal 16/0.2 s", 80)
    bench.figure(
        KEY,
        "tasks/s after the restart",
        rate_after,
        "tasks/s",
        "before the restart",
        rate_before,
        target=">= 0.8",
    )
    if resumed is not None:
        bench.figure(KEY, "endpoint back -> first task finished", resumed - back, "s")
    bench.figure(KEY, "tasks ended as failures", failed, "tasks", target="< 1", on="value")
    bench.series(KEY, "tasks finished per second", "throughput", xs, rates)
    peak = max(rates) if rates else 1.0
    bench.series(KEY, "LLM endpoint up", "throughput", xs, [peak if u else 0.0 for u in up])
    bench.note(
        KEY,
        f"endpoint down from {before:g} s to {back:g} s; {done[-1]:.0f} tasks finished in "
        f"{xs[-1]:.0f} s, {failed:.0f} as failures",
    )


def _pairs(xs: list[float], ys: list[float]):
    return zip(xs, xs[1:], ys, ys[1:])


def _slope(points: list[tuple[float, float]]) -> float:
    """Per second between the first and the last of (time, cumulative count) points."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return 0.0
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
