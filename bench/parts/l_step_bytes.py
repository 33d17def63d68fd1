"""Step encoding: bytes on adp.steps per step for 10-, 50- and 200-step agents, each LLM request
stored as what it adds to the previous call's (streams/runtime/step_encoding.py), against the
same records with every request whole (the encoding before: `whole_request_encoding`).

The agents are the real loop (runtimes/agent.py, default observation clip) with the real LLM
client against the stub LLM and a tool that returns 20 KB observations; their steps go through
the real attempt to the bench broker, and the figures are the bytes of the records read back
(values, uncompressed). The baseline re-encodes exactly those records with each request
rebuilt whole (schemas/conversation.py), so the two differ by the encoding alone. The
trajectory sizes are the aggregator's file bytes (render) of the same events both ways."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, ClassVar

from adp.connectors.sinks.base import render
from adp.runtimes.agent import Agent
from adp.runtimes.base import Outcome
from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import Provider
from adp.runtimes.tools.base import Tool, ToolResult
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Task
from adp.schemas.conversation import full_steps
from adp.streams.aggregator.assembly import assemble
from adp.streams.kafka import clients, topics
from adp.streams.kafka.reader import read_partition
from adp.streams.runtime.attempt import Attempt
from bench.core import Bench

KEY = "l"
NAME = "step-bytes"
TITLE = "Step encoding: bytes on adp.steps per step, against whole requests"
OBSERVATION = 20_000


async def probe(arguments: dict[str, Any]) -> ToolResult:
    out, block = [], str(arguments.get("n")).encode()
    for _ in range(0, OBSERVATION, 64):  # text that differs from step to step
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return ToolResult("".join(out)[:OBSERVATION])


class _Agent:
    task_type: ClassVar[str] = "reasoning"

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def __aenter__(self) -> _Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit) -> Outcome:
        return await self.agent.run(task, emit)


def script(lengths: tuple[int, ...]) -> list[dict]:
    def call(name: str, **arguments: Any) -> dict:
        return {"content": None, "tool_calls": [{"name": name, "arguments": arguments}]}

    return [
        {
            "match": f"^steps-{n} ",
            "replies": [call("probe", n=i) for i in range(1, n)] + [call("finish", answer="ok")],
        }
        for n in lengths
    ]


def whole_request_encoding(events: list[StepEvent]) -> list[bytes]:
    """The records of one attempt as the platform wrote them before: every step's LLM request
    whole."""
    steps = full_steps([e.step for e in events if e.step is not None])
    by_id = {s.step_id: s for s in steps}
    return [
        codec.encode(e if e.step is None else e.model_copy(update={"step": by_id[e.step.step_id]}))
        for e in events
    ]


async def run_agent(bench: Bench, model: LLMClient, n: int) -> list[Any]:
    """Run one n-step agent through a real attempt; its records on adp.steps."""
    tool = Tool("probe", "Read the next reading.", {"type": "object", "properties": {}}, probe)
    task = Task(
        task_id=f"steps-{n}-{uuid.uuid4().hex[:8]}",
        task_type="reasoning",
        description=f"steps-{n} readings",
        max_steps=n,
        timeout=3600,
    )
    producer = await clients.start(clients.producer(bench.bootstrap))
    try:
        attempt = Attempt(producer, "bench-step-bytes", task)
        outcome = await attempt.run(_Agent(Agent(model, [tool], "Read.", protocol="tools")))
        sent = [f.result() for f in attempt.pending]
    finally:
        await clients.close(producer)
    if not outcome.success or attempt.steps != n:
        raise RuntimeError(f"the {n}-step agent ended after {attempt.steps} steps: {outcome}")
    (partition,) = {m.partition for m in sent}
    offsets = [m.offset for m in sent]
    records = await read_partition(
        bench.bootstrap, topics.STEPS, partition, min(offsets), max(offsets) + 1
    )
    return [r for r in records if r.key == task.task_id.encode()]


async def run(bench: Bench) -> None:
    lengths = (10, 50) if bench.quick else (10, 50, 200)
    url = bench.stub(0.0, script(lengths))
    model = LLMClient(
        [Provider("stub", url, "stub-model")], timeout=120, retry=RetryPolicy(attempts=2)
    )
    per_step: dict[int, tuple[float, float]] = {}
    try:
        for n in lengths:
            records = await run_agent(bench, model, n)
            events = [codec.decode(r.value, expect=StepEvent) for r in records]
            compact = sum(len(r.value) for r in records)
            whole = sum(map(len, whole_request_encoding(events)))
            per_step[n] = (compact / n, whole / n)
            bench.figure(
                KEY,
                f"bytes on adp.steps per step, {n}-step agent",
                compact / n,
                "B",
                "every request whole",
                whole / n,
                target="< 0.1" if n >= 200 else "< 1",
            )
            (trajectory,), _ = assemble(events)
            whole_events = [
                codec.decode(b, expect=StepEvent) for b in whole_request_encoding(events)
            ]
            (before,), _ = assemble(whole_events)
            bench.figure(
                KEY,
                f"trajectory file bytes, {n}-step agent",
                len(render(trajectory)),
                "B",
                "every request whole",
                len(render(before)),
            )
    finally:
        await model.aclose()
    first, last = lengths[0], lengths[-1]
    bench.figure(
        KEY,
        f"growth of bytes per step, {last} vs {first} steps",
        per_step[last][0] / per_step[first][0],
        "x",
        "every request whole",
        per_step[last][1] / per_step[first][1],
        target="< 0.2",
    )
    bench.note(
        KEY,
        f"{OBSERVATION // 1000} KB observations (the agent shows the model the first 12,000 "
        "characters of each), tool protocol; values uncompressed",
    )
