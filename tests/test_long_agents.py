"""Long agents on the real broker: their data grows linearly with their steps, every request
rebuilds byte for byte, and a step or trajectory over the record limit is stored in chunks
rather than failed.

The agent is the real loop (runtimes/agent.py) with the real LLM client against the scripted
stub LLM and a tool that returns 20 KB observations; the attempt is the real one
(streams/runtime/attempt.py: what goes on adp.steps); the aggregator is `adp aggregate`, a real
process. The runtime keeps the requests its client sent, to hold the rebuilt ones to."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from adp.connectors.sinks.base import render
from adp.runtimes.agent import Agent
from adp.runtimes.base import Outcome, StepReport
from adp.runtimes.tools.base import Tool, ToolResult
from adp.schemas.contracts import LlmExchange, Step, Task, Trajectory
from adp.schemas.conversation import full_steps
from adp.streams.inspection.trajectories import ReadReport, read_trajectories
from adp.streams.kafka import clients, topics
from adp.streams.kafka.oversized import HEADER
from adp.streams.kafka.reader import read_topic
from adp.streams.runtime.attempt import Attempt
from tests.helpers import ADP, AdpProcess, call, client, reply, scripted_stub, wait_for

pytestmark = pytest.mark.kafka
OBSERVATION = 20_000  # bytes a tool call returns


def text(seed: str, size: int) -> str:
    """`size` characters of text that differ from step to step (nothing compresses away)."""
    out, block = [], seed.encode()
    for _ in range(0, size, 64):
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:size]


async def probe(arguments: dict[str, Any]) -> ToolResult:
    return ToolResult(
        f"reading {arguments.get('n')}:\n" + text(str(arguments.get("n")), OBSERVATION)
    )


class Recorded:
    """A runtime around one agent that keeps every step it reports, as it reported it."""

    task_type: ClassVar[str] = "reasoning"

    def __init__(self, agent: Any) -> None:
        self.agent, self.reported = agent, []

    async def __aenter__(self) -> Recorded:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit) -> Outcome:
        async def keep(report: StepReport) -> None:
            self.reported.append(report.model_copy(deep=True))
            await emit(report)

        return await self.agent.run(task, keep)


async def attempt(bootstrap: str, task: Task, runtime: Any) -> Outcome:
    producer = await clients.start(clients.producer(bootstrap))
    try:
        return await Attempt(producer, "test-long", task).run(runtime)
    finally:
        await clients.close(producer)


def aggregator(kafka, tmp_path: Path, name: str, **env: str) -> AdpProcess:
    out = tmp_path / "out"
    return AdpProcess(
        ["aggregate", "--out", str(out), "--app-id", f"test-long-{name}"],
        tmp_path / f"aggregate-{name}.log",
        {"ADP_BOOTSTRAP": kafka.bootstrap, "ADP_METRICS_PORT": "0", **env},
    ).start()


def on_topic(records: list, key: str) -> list:
    return [r for r in records if r.key == key.encode()]


def test_a_long_agent_is_linear_in_its_steps_and_rebuilds_exactly(kafka, tmp_path):
    lengths = {"long-100": 100, "long-200": 200}
    script = [
        {
            "match": f"^{key} ",
            "replies": [reply(None, call("probe", n=i)) for i in range(1, n)]
            + [reply(None, call("finish", answer="read them all"))],
        }
        for key, n in lengths.items()
    ]
    tool = Tool("probe", "Read the next reading.", {"type": "object", "properties": {}}, probe)
    agg = aggregator(kafka, tmp_path, "linear")
    reported: dict[str, list[StepReport]] = {}
    try:
        with scripted_stub(script, tmp_path) as url:

            async def run_all() -> None:
                model = client(url)
                for key, n in lengths.items():
                    agent = Agent(model, [tool], "Read.", protocol="tools", observation_limit=10**6)
                    runtime = Recorded(agent)
                    task = Task(
                        task_id=key,
                        task_type="reasoning",
                        description=f"{key} readings",
                        max_steps=n,
                        timeout=900,
                    )
                    outcome = await attempt(kafka.bootstrap, task, runtime)
                    assert outcome.success, outcome
                    reported[key] = runtime.reported
                await model.aclose()

            asyncio.run(run_all())
        out = tmp_path / "out"
        wait_for(
            lambda: all((out / f"{k}.json").exists() for k in lengths),
            300,
            "both trajectories",
            check=agg.assert_alive,
        )
    finally:
        agg.stop()
    steps_topic = asyncio.run(read_topic(kafka.bootstrap, topics.STEPS))
    published = asyncio.run(read_topic(kafka.bootstrap, topics.TRAJECTORIES))
    size: dict[str, dict[str, int]] = {}
    for key, n in lengths.items():
        assert len(reported[key]) == n
        # every request the client sent rebuilds from the stored trajectory, byte for byte
        trajectory = Trajectory.model_validate_json((out / f"{key}.json").read_bytes())
        rebuilt = full_steps(trajectory.steps)
        for sent, got in zip(reported[key], rebuilt, strict=True):
            assert orjson.dumps(got.llm.request) == orjson.dumps(sent.llm.request), got.step_id
        assert [s.llm.prefix_step for s in trajectory.steps] == [None, *range(1, n)]
        size[key] = {
            "steps": sum(len(r.value) for r in on_topic(steps_topic, key)),
            "file": (out / f"{key}.json").stat().st_size,
            "record": sum(len(r.value) for r in on_topic(published, key)),
        }
    for what in ("steps", "file", "record"):
        ratio = size["long-200"][what] / size["long-100"][what]
        # linear: twice the steps, twice the bytes (the whole conversation in every step
        # would be four times: 200 * 201 / (100 * 101))
        assert 1.9 < ratio < 2.1, (what, size)
    # and small: each 20 KB reading is stored about twice (the step's observation, the next
    # request's tool message), not once per later step
    assert size["long-200"]["steps"] < 200 * 2.5 * OBSERVATION


# --------------------------------------------------------------------------- the record limit

LIMIT = 2 * 1024 * 1024  # the record limit the platform is told of here (the broker: 32 MiB)


class Scripted:
    """A runtime that reports ready-made steps (LLM exchanges of a growing conversation)."""

    task_type: ClassVar[str] = "reasoning"

    def __init__(self, steps: list[StepReport]) -> None:
        self.steps = steps

    async def __aenter__(self) -> Scripted:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit) -> Outcome:
        for report in self.steps:
            await emit(report)
        return Outcome(True, "done")


def big_steps() -> list[StepReport]:
    history: list[dict] = [{"role": "system", "content": "s"}, {"role": "user", "content": "go"}]
    steps = []
    for i in range(1, 8):
        observation = text(f"obs {i}", 2_500_000 if i == 1 else 450_000)
        response: dict = {"choices": [{"message": {"role": "assistant", "content": f"call {i}"}}]}
        if i == 4:  # a reply too big for any record: the whole step becomes a file
            response["choices"][0]["message"]["content"] = text("reply", 2_500_000)
        steps.append(
            StepReport(
                action_type="probe",
                action_params={"n": i},
                observation=observation,
                success=True,
                timestamp=1.8e9 + i,
                duration=0.1,
                llm=LlmExchange(
                    provider="stub",
                    model="m",
                    request={"messages": list(history)},
                    response=response,
                ),
            )
        )
        history = [*history, {"role": "assistant", "content": f"call {i}"}]
        history = [*history, {"role": "tool", "content": observation[:2000]}]
    return steps


def test_steps_and_trajectories_over_the_record_limit_are_stored_in_chunks(
    kafka, tmp_path, monkeypatch
):
    monkeypatch.setenv("ADP_MAX_MESSAGE_BYTES", str(LIMIT))  # this process's attempt
    agg = aggregator(kafka, tmp_path, "chunks", ADP_MAX_MESSAGE_BYTES=str(LIMIT))
    reported = big_steps()
    out = tmp_path / "out"
    task = Task(task_id="huge", task_type="reasoning", description="huge readings")
    try:
        assert asyncio.run(attempt(kafka.bootstrap, task, Scripted(reported))).success
        wait_for(
            lambda: (out / "huge.json").exists(), 300, "the trajectory", check=agg.assert_alive
        )
    finally:
        agg.stop()
    on_steps = on_topic(asyncio.run(read_topic(kafka.bootstrap, topics.STEPS)), "huge")
    assert len(on_steps) == 9 and max(len(r.value) for r in on_steps) < LIMIT
    stored = Trajectory.model_validate_json((out / "huge.json").read_bytes())
    assert len(render(stored)) > LIMIT

    # step 1's observation: the start of it inline, all of it in the step's file
    first = stored.steps[0]
    assert first.observation.startswith(reported[0].observation[:4000])
    assert "kept whole in the step's file adp-record/observation.txt" in first.observation
    kept = out / "huge" / "step-1" / "adp-record" / "observation.txt"
    assert kept.read_text() == reported[0].observation
    # step 4 was too big for its texts alone: kept whole, and it still rebuilds
    outline = stored.steps[3]
    assert outline.llm is None and "adp-record/step.json" in outline.observation
    whole = Step.model_validate_json(
        (out / "huge" / "step-4" / "adp-record" / "step.json").read_bytes()
    )
    assert whole.llm.response == reported[3].llm.response
    assert whole.observation == reported[3].observation
    # every request there is rebuilds (step 5's is stored whole: step 4's is not in the record)
    rebuilt = full_steps([*stored.steps[:3], whole, *stored.steps[4:]])
    for sent, got in zip(reported, rebuilt, strict=True):
        assert orjson.dumps(got.llm.request) == orjson.dumps(sent.llm.request), got.step_id
    assert stored.steps[4].llm.prefix_step is None

    # adp.trajectories holds a pointer to the trajectory's chunks; readers get it whole
    (record,) = on_topic(asyncio.run(read_topic(kafka.bootstrap, topics.TRAJECTORIES)), "huge")
    assert record.value == b"" and HEADER in dict(record.headers)

    async def from_kafka() -> list[Trajectory]:
        return [t async for t in read_trajectories("kafka", ReadReport("kafka"), kafka.bootstrap)]

    (read,) = [t for t in asyncio.run(from_kafka()) if t.key == "huge"]
    assert render(read) == render(stored)
    # replay gives the aggregator's bytes from either topic
    for source in ("steps", "trajectories"):
        regen = tmp_path / f"regen-{source}"
        done = subprocess.run(
            [*ADP, "replay", "--out", str(regen), "--source", source, "-b", kafka.bootstrap],
            env={**agg.env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (regen / "huge.json").read_bytes() == (out / "huge.json").read_bytes(), source
