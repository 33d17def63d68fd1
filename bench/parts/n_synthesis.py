"""Synthesis: is the synthesizer LLM-bound? Tasks accepted per second and synthesis LLM calls per
second against what the stub's latency allows.

`adp synthesize FOLDER --out FILE` over N verified trajectories (no broker in the way: the
command's own work), the stub answering each proposal with three grounded atomic tasks and each
tool check with "cannot know" after a fixed 200 ms: a parent is a proposal, then its three tool
checks at once, so at concurrency C the ideal is C x 3 tasks per 2 x 200 ms (and C x 4 calls).
Rates are the steady state (20% to 90% of the tasks accepted, from the --report file as it
grows). On a shared machine the ideal is out of reach for anything, so the same stub is also
driven by a bare aiohttp loop at concurrency 2C (what the stub and the machine allow, however
fast the client): the synthesizer's LLM calls/s against that ceiling is the figure that says
whether it is LLM-bound. Its own CPU time per accepted task (from /proc) says how many tasks a
core could synthesize were the LLM instant.
"""

from __future__ import annotations

import asyncio
import json
import time

from adp.schemas.contracts import Step, Trajectory, TrajectoryMetadata, Verdict
from bench.core import Bench, bare_chat_calls
from bench.parts.d_runtime import cpu_seconds
from bench.tasks import steady_rate, stub_replies

KEY = "n"
NAME = "synthesis"
TITLE = "Synthesis: tasks accepted/s and LLM calls/s vs the stub's latency"
LATENCY = 0.2
PER_PARENT = 3
ORDINALS = ("first", "second", "third")


def parent(i: int) -> Trajectory:
    values = [f"{i}{j}7" for j in range(PER_PARENT)]
    step = Step(
        step_id=1,
        action_type="code_execution",
        action_params={"code": "print(series)"},
        observation=f"series {i}: " + " ".join(values),
        success=True,
        timestamp=1.79e9,
        duration=0.1,
    )
    return Trajectory(
        task_id=f"p-{i:05d}",
        task_type="code",
        description=f"Print series number {i}.",
        success=True,
        claimed_success=True,
        verification=Verdict(verifier="answer", passed=True, score=1.0),
        steps=[step],
        final_result=values[-1],
        total_duration=0.5,
        metadata=TrajectoryMetadata(
            runtime_id="bench", attempt_id=f"a-{i}", started_at=1.79e9, finished_at=1.79e9 + 1,
            llm_calls=1, prompt_tokens=10, completion_tokens=5, cached_llm_calls=0,
            task={"max_steps": 4, "timeout": 60, "expected_tools": ["python"]},
        ),
    )  # fmt: skip


def script(n: int) -> list[dict]:
    """Tool checks first (one rule), then one proposal rule per parent."""
    rules = [{"match": "^ANSWER WITHOUT TOOLS", "replies": ["Cannot know.\nFINAL ANSWER: ?"]}]
    for i in range(n):
        atomic = [
            {
                "question": f"Compute the {o} value of series number {i} with Python.",
                "answer": f"{i}{j}7",
            }
            for j, o in enumerate(ORDINALS[:PER_PARENT])
        ]
        rules.append(
            {
                "match": f"^SYNTHESIZE TASKS\\nparent task: p-{i:05d}\\n",
                "replies": [json.dumps({"atomic": atomic})],
            }
        )
    return rules


def accepted(path) -> int:
    """Candidates the --report file says were accepted so far."""
    try:
        return path.read_bytes().count(b'"outcome": "accepted"')
    except FileNotFoundError:
        return 0


async def measure(bench: Bench, n: int, concurrency: int):
    """Run the synthesizer over n parents; (times, tasks accepted, stub calls, CPU marks)."""
    folder = bench.work / "synthesis-parents"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"p-{i:05d}.json").write_text(parent(i).model_dump_json())
    url = bench.stub(LATENCY, script(n))
    report, out = bench.work / "synthesis-report.jsonl", bench.work / "synthesized.jsonl"
    before = stub_replies(url)
    proc = bench.start(
        "synthesize",
        ["synthesize", str(folder), "--out", str(out), "--report", str(report),
         "--concurrency", str(concurrency), "--methods", "atomic", "--per-parent", str(PER_PARENT)],
        env={"ADP_LLM_BASE_URL": url},
    )  # fmt: skip
    wanted = n * PER_PARENT
    began = time.monotonic()
    xs, ys, calls, marks = [], [], [], []
    while proc.poll() is None and time.monotonic() - began < 600:
        xs.append(time.monotonic() - began)
        ys.append(accepted(report))
        calls.append(stub_replies(url) - before)
        if len(marks) < 2 and ys[-1] >= (0.2, 0.9)[len(marks)] * wanted * 0.98:
            marks.append((cpu_seconds(proc.pid), ys[-1]))
        await asyncio.sleep(0.25)
    return xs, ys, calls, marks, out


async def run(bench: Bench) -> None:
    n = bench.size(1200, 150)
    concurrency = 16
    wanted = n * PER_PARENT
    xs, ys, calls, marks, out = await measure(bench, n, concurrency)
    code = bench.stop("synthesize")
    if code != 0:
        raise RuntimeError(f"adp synthesize exited {code}: see {bench.log_of('synthesize')}")
    written = sum(1 for line in out.read_text().splitlines() if line.strip())
    tasks_rate = steady_rate(xs, ys, 0.2, 0.9)
    calls_rate = steady_rate(xs, calls, 0.2, 0.9)
    ideal_tasks = concurrency * PER_PARENT / (2 * LATENCY)
    bench.figure(
        KEY,
        f"tasks accepted/s, {n} parents, concurrency {concurrency}",
        tasks_rate,
        "tasks/s",
        f"ideal {concurrency}x{PER_PARENT}/(2x{LATENCY}s)",
        ideal_tasks,
    )
    ceiling = await bare_chat_calls(
        bench.stub(LATENCY, script(n)), 2 * concurrency, 4.0, "ANSWER WITHOUT TOOLS\n"
    )
    bench.figure(
        KEY,
        f"bare aiohttp loop against the same stub, concurrency {2 * concurrency}",
        ceiling,
        "calls/s",
        f"ideal {2 * concurrency}/{LATENCY}s",
        2 * concurrency / LATENCY,
    )
    bench.figure(
        KEY,
        "synthesis LLM calls/s the stub answered",
        calls_rate,
        "calls/s",
        "the bare loop's",
        ceiling,
        target=">= 0.8",
    )
    bench.series(KEY, "tasks accepted", "throughput", xs, ys)
    bench.note(KEY, f"{written} of {wanted} candidates accepted (the rest: near duplicates)")
    if len(marks) == 2 and marks[1][1] > marks[0][1]:
        cpu_ms = (marks[1][0] - marks[0][0]) * 1000 / (marks[1][1] - marks[0][1])
        bench.note(
            KEY,
            f"synthesizer CPU per accepted task: {cpu_ms:.2f} ms "
            f"(one core synthesizes {1000 / cpu_ms:.0f} tasks/s were the LLM instant)",
        )
