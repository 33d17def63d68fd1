"""Priority lanes: one runtime busy with a backlog of low-priority tasks; urgent tasks produced
once it is well under way. Figures: the urgent tasks' wait from produce to start against the
backlog's (same run), how many backlog tasks still started before the first urgent one, and
the low lane's share of the starts while urgent work was waiting
against the configured minimum share. Tasks need one LLM reply each (no tool), so their
duration is the stub's latency and slots free at a steady pace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

from bench.core import ADP, Bench
from bench.lanes import lane_starts, percentile, share_while_busy
from bench.tasks import stub_replies

KEY = "i"
NAME = "lanes"
TITLE = "Priority lanes: urgent tasks behind a backlog, and the low lane's share"
LATENCY, CONCURRENCY, MIN_SHARE = 0.2, 4, 0.2
SCRIPT = [{"replies": ["FINAL ANSWER: 42"]}]


def produce(bench: Bench, prefix: str, n: int, priority: int) -> None:
    path = bench.work / f"{prefix}.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": f"{prefix}-{i:05d}",
                    "task_type": "code",
                    "description": f"Answer {i}.",
                    "priority": priority,
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    subprocess.run(
        [*ADP, "produce", "--quiet", str(path)],
        env={**bench.children.env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def replies_reach(bench: Bench, url: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while stub_replies(url) < count:
        bench.children.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the lanes part's runtime did not reach {count} tasks")
        await asyncio.sleep(0.1)


async def run(bench: Bench) -> None:
    backlog, urgent = bench.size(240, 60), bench.size(30, 10)
    url = bench.stub(LATENCY, SCRIPT)
    before = stub_replies(url)
    bench.start(
        "lanes-runtime",
        ["runtime", "code", "--concurrency", str(CONCURRENCY), "--min-share", str(MIN_SHARE)],
        env={"ADP_LLM_BASE_URL": url},
    )
    produce(bench, "lanes-low", backlog, priority=1)
    await replies_reach(bench, url, before + backlog // 4)  # a backlog well under way
    produce(bench, "lanes-high", urgent, priority=10)
    await replies_reach(bench, url, before + backlog + urgent)
    bench.stop("lanes-runtime")
    starts = await lane_starts(bench.bootstrap, "code", "lanes-")
    waits = {lane: [s.wait for s in starts if s.lane == lane] for lane in ("high", "low")}
    high_p50, low_p50 = percentile(waits["high"], 50), percentile(waits["low"], 50)
    bench.figure(
        KEY,
        "urgent (high lane) wait p50, produce -> start",
        high_p50,
        "s",
        "backlog (low lane) wait p50",
        low_p50,
        target="<= 0.25",
    )
    # in slots: backlog tasks that still started between the urgent tasks' produce and the
    # first urgent start (the next free slot should take it: at most one per slot in flight)
    first_produced = min(s.produced for s in starts if s.lane == "high")
    first_urgent = min(s.started for s in starts if s.lane == "high")
    overtaken = sum(
        1 for s in starts if s.lane == "low" and first_produced <= s.started < first_urgent
    )
    bench.figure(
        KEY,
        "backlog starts before the first urgent one",
        overtaken,
        "tasks",
        target=f"<= {CONCURRENCY}",
        on="value",
    )
    share, stretch = share_while_busy(starts, "low", "high")
    bench.figure(
        KEY,
        "low lane's share of starts while urgent work waited",
        share,
        "",
        "--min-share",
        MIN_SHARE,
        target=">= 0.9",
    )
    for lane, w in waits.items():
        bench.series(KEY, f"{lane} lane wait", "cdf", w)
    bench.note(
        KEY,
        f"{backlog} low + {urgent} high tasks, 1 runtime x {CONCURRENCY}, stub "
        f"{LATENCY}s; {stretch} starts while urgent work waited",
    )
