"""Rebalances: a group of code runtimes scaled 1 -> 2 -> 3 -> 2 -> 1 while long tasks run, once
with --rebalance eager (every rebalance cancels every running task: the plain Kafka consumer)
and once sticky (the default: only tasks whose partitions moved are cancelled). Figure: redone
work per scale event -- attempts beyond one per task over the tasks running at the rebalances --
sticky against eager, same run. Members leave after draining, so leaving cancels nothing of
their own; the difference is what the others keep."""

from __future__ import annotations

import asyncio
import time

from bench.core import Bench
from bench.rebalance import attempts_of, rebalances, redone, running_at
from bench.tasks import produce_tasks, stub_replies

KEY = "o"
NAME = "rebalance"
TITLE = "Rebalances: redone work per scale event, sticky against eager"
LATENCY, CONCURRENCY = 2.0, 6  # a task: two LLM calls, ~4 s


async def until(bench: Bench, what: str, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        bench.children.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the rebalance part timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def scale_run(bench: Bench, mode: str, n: int) -> tuple[float, int, int, int]:
    """One run; -> (redone / running at the rebalances, redone, running, rebalances)."""
    url = bench.stub(LATENCY)
    prefix, names = f"rebal-{mode}", []

    async def start(sign: str = "success=") -> None:
        """Start a member; return once its log shows `sign` (by default: it finished a task,
        so it joined and its first rebalance is behind it)."""
        name = f"{prefix}-{len(names) + 1}"
        args = ["runtime", "code", "--concurrency", str(CONCURRENCY), "--rebalance", mode]
        bench.start(name, [*args, "--runtime-id", name], env={"ADP_LLM_BASE_URL": url})
        names.append(name)
        log = bench.log_of(name)
        await until(bench, f"{name}'s log to say {sign!r}", lambda: sign in log.read_text())

    def a_round(members: int):
        # every member's slots turned over once (a task: two replies), counted from now
        target = min(stub_replies(url) + 2 * CONCURRENCY * members, before + 2 * n)
        return lambda: stub_replies(url) >= target

    before = stub_replies(url)
    await start(sign="assigned [")
    produce_tasks(bench, prefix, n)
    await until(bench, "the first runtime to be busy", a_round(1))
    for step in ("up", "up", "down", "down"):
        if step == "up":
            await start()
        else:
            bench.stop(names.pop())
        await until(bench, f"a round of work with {len(names)} member(s)", a_round(len(names)))
    await until(bench, "every task", lambda: stub_replies(url) >= before + 2 * n, timeout=600)
    attempts = await attempts_of(bench.bootstrap, prefix)
    while len({a.task for a in attempts if a.finished}) < n:  # redone tasks still running
        await asyncio.sleep(2)
        attempts = await attempts_of(bench.bootstrap, prefix)
    bench.stop(names.pop())
    moments = rebalances([bench.log_of(f"{prefix}-{i}") for i in (1, 2, 3)])
    running = sum(running_at(attempts, m, moments) for m in moments)
    twice = redone(attempts)
    return twice / max(running, 1), twice, running, len(moments)


async def run(bench: Bench) -> None:
    n = bench.size(160, 80)
    eager, e_redone, e_running, e_events = await scale_run(bench, "eager", n)
    sticky, s_redone, s_running, s_events = await scale_run(bench, "sticky", n)
    bench.figure(
        KEY,
        "redone work per scale event (attempts redone / tasks running), sticky",
        sticky,
        "",
        "eager (--rebalance eager)",
        eager,
        target="<= 0.5",
    )
    bench.note(
        KEY,
        f"{n} code tasks, 2 LLM calls of {LATENCY}s each, runtimes x {CONCURRENCY} scaled "
        f"1-2-3-2-1; eager: {e_redone} redone of {e_running} running over {e_events} "
        f"rebalances; sticky: {s_redone} of {s_running} over {s_events}",
    )
