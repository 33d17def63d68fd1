"""Load test: thousands of code tasks through the whole pipeline with the stub LLM.

    .venv/bin/python -m bench.load_test --tasks 2000 --runtimes 2 --concurrency 16
    .venv/bin/python -m bench.load_test --tasks 2000 --priorities 1,1,1,5,10   # lanes mixed

Starts its own Kafka (cluster "bench"), the stub LLM, the aggregator and R code runtimes;
produces the tasks; prints throughput and lag every few seconds; ends with a table. Speed is
reported as ratios against baselines measured in the same run on the same machine:
- sandbox only: the same number of python runs straight through the bubblewrap sandbox at the
  same total concurrency (the work each task really does, without Kafka, LLM or aggregation);
- raw Kafka: plain aiokafka produce + consume of as many small messages on the same broker.
With --priorities the tasks cycle through those priorities, and a second table shows how long
tasks waited from produce to start per priority lane (bench/lanes.py), against the lowest lane.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adp.core.process import ChildProcesses, http_ok
from adp.core.settings import settings
from adp.streams.inspection.status import StatusReader
from adp.streams.kafka.broker.server import KafkaCluster
from bench.lanes import lane_waits, summary

ADP = [sys.executable, "-m", "adp"]
console = Console()


async def sandbox_baseline(n: int, concurrency: int) -> float:
    from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox

    sandbox, limits, gate = make_sandbox(), SandboxLimits(), asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            result = await sandbox.run_python(f"print({i!r})", limits)
            assert result.ok, result.observation()

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - began)


async def kafka_baseline(bootstrap: str, n: int) -> float:
    from adp.streams.kafka import clients
    from adp.streams.kafka.admin import ensure_topics
    from adp.streams.kafka.topics import TopicSpec

    topic = "bench.raw"
    await ensure_topics(bootstrap, specs=[TopicSpec(topic, 6)])
    # plain clients: no idempotence, no compression (the baseline is Kafka itself)
    producer = await clients.start(
        clients.producer(
            bootstrap, client_id="adp-bench", enable_idempotence=False, compression_type=None
        )
    )
    consumer = await clients.start(clients.consumer(topic, conf=bootstrap, client_id="adp-bench"))
    began = time.perf_counter()
    try:
        futures = [await producer.send(topic, b"x" * 200, key=str(i).encode()) for i in range(n)]
        await asyncio.gather(*futures)
        seen = 0
        while seen < n:
            seen += sum(len(b) for b in (await consumer.getmany(timeout_ms=500)).values())
    finally:
        await producer.stop()
        await consumer.stop()
    return n / (time.perf_counter() - began)


async def watch(bootstrap: str, out: Path, n: int, every: float, timeout: float) -> float:
    """Print progress until all n trajectory files exist; return the seconds it took."""
    began = time.perf_counter()
    last_done, last_t = 0, began
    async with StatusReader(bootstrap) as reader:
        while True:
            await asyncio.sleep(every)
            done = sum(1 for _ in out.glob("*.json"))
            code = next(r for r in await reader.read() if r.task_type == "code")
            now = time.perf_counter()
            rate = (done - last_done) / (now - last_t)
            console.print(
                f"{now - began:6.1f}s  trajectories {done:6d}/{n}  "
                f"{rate:7.1f}/s  pending {code.pending:6d}  running {code.running:4d}"
            )
            last_done, last_t = done, now
            if done >= n:
                return now - began
            if now - began > timeout:
                raise SystemExit(f"timed out with {done}/{n} trajectories")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--runtimes", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.0, help="stub LLM seconds per reply")
    ap.add_argument("--port", type=int, default=29092, help="first Kafka port of the bench cluster")
    ap.add_argument("--every", type=float, default=3.0, help="seconds between progress lines")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument(
        "--priorities",
        default="5",
        help="comma-separated task priorities, cycled over the tasks (e.g. 1,1,1,5,10)",
    )
    args = ap.parse_args()
    priorities = [int(p) for p in args.priorities.split(",") if p.strip()]

    work = Path(tempfile.mkdtemp(prefix="adp-bench-"))
    out = work / "trajectories"
    cluster = KafkaCluster(bootstrap=f"127.0.0.1:{args.port}", name="bench")
    env = dict(
        os.environ,
        ADP_BOOTSTRAP=cluster.bootstrap,
        ADP_HOME=str(settings().home),
        ADP_METRICS_PORT="0",
        ADP_LLM_BASE_URL=f"http://127.0.0.1:{args.port + 1}/v1",
        ADP_LLM_MODEL="stub",
    )
    children = ChildProcesses(work, env)
    try:
        cluster.wipe()
        cluster.up()
        console.print(f"Kafka at {cluster.bootstrap}; work dir {work}")
        raw = asyncio.run(kafka_baseline(cluster.bootstrap, args.tasks))
        total_concurrency = args.runtimes * args.concurrency
        sandbox = asyncio.run(sandbox_baseline(args.tasks, total_concurrency))

        children.start(
            "llm-stub",
            [*ADP, "llm-stub", "--port", str(args.port + 1), "--latency", str(args.latency)],
        )
        children.start("aggregator", [*ADP, "aggregate", "--out", str(out)])
        for i in range(args.runtimes):
            children.start(
                f"runtime-{i}", [*ADP, "runtime", "code", "--concurrency", str(args.concurrency)]
            )
        while not http_ok(f"http://127.0.0.1:{args.port + 1}/health"):
            children.check()
            time.sleep(0.2)
        tasks = work / "tasks.jsonl"
        tasks.write_text(
            "".join(
                json.dumps(
                    {
                        "task_id": f"load-{i:06d}",
                        "task_type": "code",
                        "description": f"Print the number {i}.",
                        "max_steps": 4,
                        "priority": priorities[i % len(priorities)],
                    }
                )
                + "\n"
                for i in range(args.tasks)
            )
        )
        began = time.perf_counter()
        subprocess.run([*ADP, "produce", "--quiet", str(tasks)], env=env, check=True)
        produced_in = time.perf_counter() - began
        took = asyncio.run(watch(cluster.bootstrap, out, args.tasks, args.every, args.timeout))
        took += produced_in
        waits = summary(asyncio.run(lane_waits(cluster.bootstrap, "code", "load-")))
    finally:
        children.stop()
        cluster.down()

    pipeline = args.tasks / took
    table = Table(
        title=f"{args.tasks} code tasks, {args.runtimes} runtimes x "
        f"{args.concurrency} concurrency, stub latency {args.latency}s"
    )
    for col in ("measure", "per second", "ratio to pipeline"):
        table.add_column(col, justify="right")
    table.add_row("pipeline (tasks.jsonl -> files)", f"{pipeline:.1f}", "1.00")
    table.add_row("sandbox only, same concurrency", f"{sandbox:.1f}", f"{sandbox / pipeline:.2f}")
    table.add_row("raw Kafka produce+consume", f"{raw:.0f}", f"{raw / pipeline:.1f}")
    console.print(table)
    if len(waits) > 1:
        lowest_p50 = waits[-1][2]
        lanes = Table(title="waiting from produce to start, per priority lane")
        for col in ("lane", "tasks", "p50 s", "p95 s", "max s", "p50 / lowest lane's p50"):
            lanes.add_column(col, justify="right")
        for lane, n, p50, p95, most in waits:
            lanes.add_row(
                lane,
                str(n),
                f"{p50:.2f}",
                f"{p95:.2f}",
                f"{most:.2f}",
                f"{p50 / lowest_p50:.2f}" if lowest_p50 else "-",
            )
        console.print(lanes)


if __name__ == "__main__":
    main()
