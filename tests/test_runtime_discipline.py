"""The runtime consumer discipline (design.md, "Delivery guarantees"), proven against a real
broker: RuntimeWorker runs in-process and everything asserted is read back from Kafka (the
group's committed offsets, the events on adp.steps).

Most tests drive the worker with GateRuntime, a runtime whose tasks wait on events the test
controls: the runtime is not under test here, the consumer is. The timeout/limit tests go
through the real code runtime, the real LLM client and the scripted stub LLM.

Every test uses its own consumer group, started at the current end of every lane of
adp.tasks.code (the module's broker is shared, so a new group must not pick up earlier tests'
tasks), and tells its tasks apart on adp.steps by a unique task_id prefix. Tasks go to the
default lane (adp.tasks.code), except in the priority-lane tests at the end.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import TopicPartition

from adp.core.limit import AdaptiveLimit
from adp.runtimes.base import Outcome, RuntimeContext, StepReport
from adp.runtimes.code import CodeRuntime
from adp.runtimes.llm.client import build_model
from adp.runtimes.llm.providers import Provider
from adp.runtimes.llm.stub import StubServer
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Task
from adp.streams.kafka import clients, topics
from adp.streams.kafka.reader import read_topic
from adp.streams.runtime.worker import RuntimeWorker

pytestmark = pytest.mark.kafka

TOPIC = topics.task_topic("code")
PARTITIONS = next(s.partitions for s in topics.platform_topics() if s.name == TOPIC)
STEPS_PARTITIONS = next(s.partitions for s in topics.platform_topics() if s.name == topics.STEPS)
ALL_TPS = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]  # the default lane's
LANE_TPS = [TopicPartition(t, p) for t in topics.lane_topics("code") for p in range(PARTITIONS)]


# --------------------------------------------------------------------------- helpers


async def until(
    condition: Callable[[], Any],
    what: str,
    timeout: float = 60.0,
    workers: tuple[asyncio.Task, ...] = (),
    interval: float = 0.05,
) -> Any:
    """Poll `condition` (sync or async) until truthy; fail after `timeout`. Fails at once if
    one of the `workers` tasks ended (a crashed worker must not look like a slow one)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for w in workers:
            if w.done():
                w.result()  # raises the worker's exception, if any
                raise AssertionError(f"the worker stopped while waiting for {what}")
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def fresh_group(bootstrap: str, name: str) -> str:
    """A new consumer group whose committed offsets are the current ends of every lane of
    adp.tasks.code."""
    group = f"test-discipline-{name}-{uuid.uuid4().hex[:8]}"
    consumer = await clients.start(clients.consumer(conf=bootstrap, group_id=group))
    try:
        consumer.assign(LANE_TPS)
        ends = await consumer.end_offsets(LANE_TPS)
        await consumer.commit({tp: ends[tp] for tp in LANE_TPS})
    finally:
        await consumer.stop()
    return group


async def produce(bootstrap: str, placed: list[tuple[Task, int]]) -> dict[str, tuple[int, int]]:
    """Produce each task to the given partition; -> task_id: (partition, offset)."""
    producer = await clients.start(clients.producer(bootstrap))
    where = {}
    try:
        for task, partition in placed:
            md = await producer.send_and_wait(
                TOPIC, codec.encode(task), key=task.task_id.encode(), partition=partition
            )
            where[task.task_id] = (md.partition, md.offset)
    finally:
        await producer.stop()
    return where


class Committed:
    """The group's committed offsets, as the broker has them."""

    def __init__(self, bootstrap: str, group: str):
        self.admin = clients.admin(bootstrap)
        self.group = group

    async def __aenter__(self) -> Committed:
        await clients.start(self.admin)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def raw(self) -> dict[int, Any]:
        got = await self.admin.list_consumer_group_offsets(self.group, partitions=ALL_TPS)
        return {tp.partition: meta for tp, meta in got.items()}

    async def offsets(self) -> dict[int, int]:
        return {p: meta.offset for p, meta in (await self.raw()).items()}


class StepsReader:
    """Reads adp.steps from where it stood when created (no group): what the broker holds."""

    def __init__(self, bootstrap: str):
        self.consumer = clients.consumer(conf=bootstrap)
        self.tps = [TopicPartition(topics.STEPS, p) for p in range(STEPS_PARTITIONS)]
        self.events: list[StepEvent] = []

    async def __aenter__(self) -> StepsReader:
        await clients.start(self.consumer)
        self.consumer.assign(self.tps)
        for tp, end in (await self.consumer.end_offsets(self.tps)).items():
            self.consumer.seek(tp, end)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def catch_up(self) -> list[StepEvent]:
        """Everything the broker acknowledged so far (up to the current end offsets)."""
        ends = await self.consumer.end_offsets(self.tps)
        while [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]:
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                self.events.extend(codec.decode(r.value, expect=StepEvent) for r in records)
        return self.events


async def events_of(bootstrap: str, task_ids: set[str]) -> dict[str, list[StepEvent]]:
    """Every event of these tasks on adp.steps, per task in broker (= emission) order."""
    out: dict[str, list[StepEvent]] = {t: [] for t in task_ids}
    for r in await read_topic(bootstrap, topics.STEPS):
        if r.key is not None and r.key.decode() in task_ids:
            out[r.key.decode()].append(codec.decode(r.value, expect=StepEvent))
    return out


def attempts_of(events: list[StepEvent]) -> dict[str, list[StepEvent]]:
    """attempt_id -> its events, attempts in the order they started."""
    by: dict[str, list[StepEvent]] = {}
    for e in events:
        by.setdefault(e.attempt_id, []).append(e)
    return by


def kinds(events: list[StepEvent]) -> list[str]:
    return [str(e.event_type) for e in events]


class ObservedWorker(RuntimeWorker):
    """RuntimeWorker plus observation only: what the rebalance listener was told, which
    capacity each poll round computed, how many tasks each intake added, and every commit the
    worker sent (an optional hook sees it just before it goes to the broker)."""

    def __init__(
        self,
        *args: Any,
        before_commit: Callable[[dict[int, int]], Awaitable[None]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.revocations: list[set[TopicPartition]] = []
        self.assignments: list[set[TopicPartition]] = []
        self.capacities: list[int] = []
        self.intakes: list[tuple[int, int, int]] = []  # (in flight before, taken, capacity)
        self.commits: list[dict[int, int]] = []
        self.before_commit = before_commit
        self._spying = False

    def capacity(self) -> int:
        current = super().capacity()
        self.capacities.append(current)
        return current

    async def _start_batch(self, tp, records, *args: Any) -> None:
        # a task that only waits for its events' acks holds no slot
        self.intakes.append((len(self.inflight) - len(self._acking), len(records), self._capacity))
        await super()._start_batch(tp, records, *args)

    async def revoke(self, revoked) -> None:
        if revoked:  # aiokafka also calls the listener with nothing on the first join
            self.revocations.append(set(revoked))
        await super().revoke(revoked)

    async def assigned(self, assigned) -> None:
        self.assignments.append(set(assigned))
        if not self._spying:  # before the first commit: commits follow an assignment
            self._spying = True
            real = self.consumer.commit

            async def commit(offsets=None):
                plain = {tp.partition: om.offset for tp, om in offsets.items()}
                if self.before_commit:
                    await self.before_commit(plain)
                await real(offsets)
                self.commits.append(plain)

            self.consumer.commit = commit
        await super().assigned(assigned)


@asynccontextmanager
async def running(worker: RuntimeWorker):
    """Run the worker in this loop until the block ends; yields its task once it holds
    partitions. A crash of the worker fails the test."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, drain_timeout=5, metrics_port=0))
    try:
        await until(
            lambda: worker.consumer is not None and worker.consumer.assignment(),
            "the worker to be assigned partitions",
            workers=(task,),
        )
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


class GateRuntime:
    """A test runtime: each task emits step 1, waits until the test opens its gate, emits
    step 2 and succeeds. Records starts, cancellations and how many ran at once."""

    task_type = "code"

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.active: dict[str, int] = defaultdict(int)
        self.peak = 0

    async def __aenter__(self) -> GateRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def running(self) -> int:
        return sum(self.active.values())

    @staticmethod
    def step(what: str) -> StepReport:
        return StepReport(
            action_type=what,
            action_params={},
            observation=what,
            success=True,
            timestamp=0.0,
            duration=0.0,
        )

    async def run(self, task: Task, emit) -> Outcome:
        self.started.append(task.task_id)
        self.active[task.task_id] += 1
        self.peak = max(self.peak, self.running())
        try:
            await emit(self.step("waiting"))
            await self.gates[task.task_id].wait()
            await emit(self.step("released"))
            return Outcome(True, f"done {task.task_id}")
        except asyncio.CancelledError:
            self.cancelled.append(task.task_id)
            raise
        finally:
            self.active[task.task_id] -= 1


def gated_tasks(name: str, n: int, **fields: Any) -> list[Task]:
    tag = uuid.uuid4().hex[:8]
    return [
        Task(task_id=f"{name}-{tag}-{i}", task_type="code", description=f"{name} {i}", **fields)
        for i in range(n)
    ]


def assert_intake_within_capacity(worker: ObservedWorker) -> None:
    for inflight, taken, capacity in worker.intakes:
        assert inflight + taken <= capacity, worker.intakes


# --------------------------------------------------------------------------- 1. concurrency


async def test_concurrency_limit_and_contiguous_commits(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "contiguous")
    runtime = GateRuntime()
    tasks = gated_tasks("contiguous", 6)
    ids = [t.task_id for t in tasks]
    async with StepsReader(bootstrap) as steps, Committed(bootstrap, group) as committed:
        where = await produce(bootstrap, [(t, 0) for t in tasks])
        base = where[ids[0]][1]
        assert [where[i] for i in ids] == [(0, base + k) for k in range(6)]
        offset_of = {i: where[i][1] for i in ids}
        covered_early: list[tuple[int, str]] = []

        async def finished_before_commit(commit: dict[int, int]) -> None:
            # Runs just before each commit goes out: every task below the new commit point
            # must already have its finished event on the broker.
            if 0 not in commit:
                return
            done = {e.task_id for e in await steps.catch_up() if e.event_type == "finished"}
            covered_early.extend(
                (commit[0], i) for i in ids if offset_of[i] < commit[0] and i not in done
            )

        worker = ObservedWorker(
            runtime,
            "code",
            bootstrap,
            concurrency=3,
            group_id=group,
            before_commit=finished_before_commit,
        )
        async with running(worker) as wt:
            ws = (wt,)
            await until(lambda: len(runtime.started) >= 3, "three tasks running", workers=ws)
            # at the limit the three others wait fetched, and their lane is paused (it holds
            # enough to fill every slot); the empty lanes keep fetching, the loop keeps polling
            await until(
                lambda: (
                    worker.intake.waiting() == {"high": 0, "default": 3, "low": 0}
                    and worker.consumer.paused() == set(ALL_TPS)
                ),
                "the default lane to be paused with three tasks at hand",
                workers=ws,
            )
            assert worker.consumer.assignment() == set(LANE_TPS)
            assert sorted(runtime.started) == sorted(ids[:3]) and len(worker.inflight) == 3
            meta = (await committed.raw())[0]
            # the running offsets were committed (as metadata) before they started
            assert meta.offset == base
            assert json.loads(meta.metadata)["run"] == [base, base + 1, base + 2]

            def finished_in_worker(i: str, sent_before: int) -> bool:
                # a task leaves `inflight` after its _done asked for a commit; a commit sent
                # after that carries the partition's state at that moment or newer
                return (
                    offset_of[i] not in {off for _, off in worker.inflight.values()}
                    and i in runtime.started
                    and len(worker.commits) > sent_before
                )

            sent = len(worker.commits)
            runtime.gates[ids[1]].set()
            await until(lambda: finished_in_worker(ids[1], sent), "offset 1 done", workers=ws)
            await worker.committer.settle()
            assert (await committed.offsets())[0] == base  # 0 still running bounds the commit

            sent = len(worker.commits)
            runtime.gates[ids[0]].set()
            await until(lambda: finished_in_worker(ids[0], sent), "offset 0 done", workers=ws)
            await worker.committer.settle()
            assert (await committed.offsets())[0] == base + 2  # 0 and 1 done, 2 still runs

            for i in ids:
                runtime.gates[i].set()
            await until(lambda: _at(committed, 0, base + 6), "the commit to reach 6", workers=ws)
    assert worker.stats.finished == 6 and worker.stats.succeeded == 6
    assert runtime.peak == 3 and runtime.cancelled == []
    assert sorted(runtime.started) == sorted(ids)
    assert_intake_within_capacity(worker)
    assert covered_early == [], "a commit covered a task whose finished event was not on the broker"
    p0 = [c[0] for c in worker.commits if 0 in c]
    assert p0 == sorted(p0) and p0[-1] == base + 6  # monotone, and the hook saw the last one
    events = await events_of(bootstrap, set(ids))
    for i in ids:
        attempts = attempts_of(events[i])
        assert len(attempts) == 1, (i, kinds(events[i]))
        assert kinds(events[i]) == ["started", "step", "step", "finished"]
        s1, s2 = events[i][1].step, events[i][2].step
        assert (s1.step_id, s1.action_type, s2.step_id, s2.action_type) == (
            1,
            "waiting",
            2,
            "released",
        )
        fin = events[i][3].finish
        assert fin.success and fin.step_count == 2 and fin.final_result == f"done {i}"
        assert events[i][0].task.task_id == i


async def _at(committed: Committed, partition: int, offset: int) -> bool:
    return (await committed.offsets())[partition] == offset


# --------------------------------------------------------------------------- 2. rebalance


FAST_GROUP = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}


async def test_rebalance_cancels_revoked_tasks_and_they_are_redone(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "rebalance")
    runtime = GateRuntime()
    tasks = gated_tasks("rebalance", PARTITIONS)
    ids = [t.task_id for t in tasks]
    where = await produce(bootstrap, [(t, p) for p, t in enumerate(tasks)])
    offset_of = {i: where[i][1] for i in ids}
    part_of = {i: where[i][0] for i in ids}
    a = ObservedWorker(
        runtime,
        "code",
        bootstrap,
        concurrency=len(tasks) + 2,
        group_id=group,
        runtime_id="worker-A",
        consumer_options=FAST_GROUP,
    )
    b = ObservedWorker(
        runtime,
        "code",
        bootstrap,
        concurrency=len(tasks) + 2,
        group_id=group,
        runtime_id="worker-B",
        consumer_options=FAST_GROUP,
    )
    async with Committed(bootstrap, group) as committed, running(a) as at:
        await until(lambda: len(runtime.started) == len(ids), "A running every task", workers=(at,))
        assert a.consumer.assignment() == set(LANE_TPS) and runtime.cancelled == []
        async with running(b) as bt:
            ws = (at, bt)

            def settled() -> bool:
                if not a.revocations:
                    return False
                revoked = {tp.partition for tp in a.revocations[0]}
                victims = [i for i in ids if part_of[i] in revoked]
                owners = a.consumer.assignment() | b.consumer.assignment()
                return (
                    sorted(runtime.cancelled) == sorted(victims)
                    and owners == set(LANE_TPS)
                    and b.consumer.assignment()
                    and all(runtime.active[i] == 1 for i in ids)
                )

            await until(
                settled, "the rebalance to settle and the revoked tasks to be redone", workers=ws
            )
            assert len(a.revocations) == 1
            assert not (a.consumer.assignment() & b.consumer.assignment())
            # nothing was committed past a cancelled task: each partition's commit point
            # is still its (single) task's offset
            now = await committed.offsets()
            assert {p: now[p] for p in range(PARTITIONS)} == {part_of[i]: offset_of[i] for i in ids}
            for i in ids:
                runtime.gates[i].set()
            await until(
                lambda: _all_at(committed, {part_of[i]: offset_of[i] + 1 for i in ids}),
                "every task committed",
                workers=ws,
            )
    assert_intake_within_capacity(a)
    assert_intake_within_capacity(b)
    cancelled = set(runtime.cancelled)
    assert cancelled, "the rebalance cancelled nothing: this test proved nothing"
    events = await events_of(bootstrap, set(ids))
    final_owner = {}
    for i in ids:
        attempts = attempts_of(events[i])
        order = list(attempts)
        assert len(order) == 1 + runtime.cancelled.count(i), (i, kinds(events[i]))
        finished = [e for e in events[i] if e.event_type == "finished"]
        # exactly one finished event per task, and it belongs to the last attempt
        assert len(finished) == 1 and finished[0].attempt_id == order[-1]
        assert finished[0].finish.success
        assert kinds(attempts[order[-1]]) == ["started", "step", "step", "finished"]
        for abandoned in order[:-1]:
            # the cancelled attempt: A's, started, maybe its first step, never finished
            assert kinds(attempts[abandoned]) in (["started"], ["started", "step"])
            assert attempts[abandoned][0].runtime_id == "worker-A"
        final_owner[i] = attempts[order[-1]][0].runtime_id
    assert {final_owner[i] for i in cancelled} <= {"worker-A", "worker-B"}
    assert "worker-B" in final_owner.values()  # partitions did move to B


async def _all_at(committed: Committed, expected: dict[int, int]) -> bool:
    now = await committed.offsets()
    return all(now[p] == o for p, o in expected.items())


# --------------------------------------------------------------------------- 3. long task


async def test_task_longer_than_max_poll_interval_keeps_its_consumer(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "longtask")
    runtime = GateRuntime()
    task, queued = gated_tasks("longtask", 2)
    runtime.gates[queued.task_id].set()  # the queued one finishes as soon as it may start
    max_poll_ms = 2000
    worker = ObservedWorker(
        runtime,
        "code",
        bootstrap,
        concurrency=1,
        group_id=group,
        consumer_options={
            "max_poll_interval_ms": max_poll_ms,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
        },
    )
    where = await produce(bootstrap, [(task, 3), (queued, 3)])
    async with Committed(bootstrap, group) as committed, running(worker) as wt:
        await until(lambda: runtime.started == [task.task_id], "the task to start", workers=(wt,))
        # the queued task is at hand and its lane paused: nothing more is fetched or run
        await until(
            lambda: (
                worker.consumer.paused() == set(ALL_TPS) and worker.intake.waiting()["default"] == 1
            ),
            "the default lane paused at the limit",
            workers=(wt,),
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        # The one sleep of this module: elapsed time is itself the condition under test
        # (the task must outlast max.poll.interval.ms three times over).
        await asyncio.sleep(3 * max_poll_ms / 1000)
        assert loop.time() - began >= 3 * max_poll_ms / 1000
        assert not wt.done() and runtime.active[task.task_id] == 1
        assert runtime.started == [task.task_id]
        runtime.gates[task.task_id].set()
        await until(
            lambda: _at(committed, 3, where[queued.task_id][1] + 1),
            "both tasks committed",
            workers=(wt,),
        )
    # the member was never kicked out: no revocation, no second assignment, one attempt each
    assert worker.revocations == [] and len(worker.assignments) == 1
    assert runtime.started == [task.task_id, queued.task_id] and runtime.cancelled == []
    events = (await events_of(bootstrap, {task.task_id}))[task.task_id]
    assert len(attempts_of(events)) == 1
    assert kinds(events) == ["started", "step", "step", "finished"]
    assert events[-1].finish.success


# --------------------------------------------------------------------------- 4. real runtime


STUB_SCRIPT = [
    {"match": "HANG", "replies": [{"hang": 60}]},
    {"match": "LOOP", "replies": ["Let me compute it.\n```python\nprint(6 * 7)\n```"]},
    {"match": "THROTTLE", "replies": [{"status": 429, "times": 6}, "FINAL ANSWER: ok"]},
]


class HeldStub(StubServer):
    """The scripted stub, in this loop, holding every successful reply until `release` is set
    (error replies such as 429 go out at once)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()
        self.release.set()
        self.held = 0

    async def _chat(self, request):
        response = await super()._chat(request)
        if response.status == 200 and not self.release.is_set():
            self.held += 1
            await self.release.wait()
        return response


@asynccontextmanager
async def code_runtime(options: dict[str, Any] | None = None):
    async with HeldStub(script=STUB_SCRIPT) as stub:
        model = build_model(
            {"providers": [Provider("stub", stub.base_url, "stub-model")], **(options or {})}
        )
        try:
            yield stub, CodeRuntime(RuntimeContext(runtime_id="code-test", model=model))
        finally:
            stub.release.set()
            await model.aclose()


async def test_timeout_ends_the_task_and_frees_its_slot(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "timeout")
    tag = uuid.uuid4().hex[:8]
    hang = Task(
        task_id=f"timeout-{tag}-hang",
        task_type="code",
        timeout=2,
        description="HANG: the model never answers",
    )
    nxt = Task(task_id=f"timeout-{tag}-next", task_type="code", description="print 42")
    where = await produce(bootstrap, [(hang, 1), (nxt, 1)])
    async with code_runtime() as (_, runtime), Committed(bootstrap, group) as committed:
        worker = ObservedWorker(runtime, "code", bootstrap, concurrency=1, group_id=group)
        async with running(worker) as wt:
            await until(
                lambda: _at(committed, 1, where[nxt.task_id][1] + 1),
                "both tasks committed",
                workers=(wt,),
            )
    assert worker.stats.finished == 2 and worker.stats.by_error == {"timeout": 1}
    assert_intake_within_capacity(worker)
    events = await events_of(bootstrap, {hang.task_id, nxt.task_id})
    assert kinds(events[hang.task_id]) == ["started", "finished"]
    fin = events[hang.task_id][-1].finish
    assert not fin.success and fin.error_type == "timeout" and fin.step_count == 0
    # concurrency 1: the next task could only run in the slot the timed-out one freed
    assert kinds(events[nxt.task_id])[-1] == "finished"
    assert events[nxt.task_id][-1].finish.success
    assert events[nxt.task_id][0].timestamp >= events[hang.task_id][-1].timestamp


async def test_max_steps_ends_the_task_after_exactly_max_steps(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "maxsteps")
    task = Task(
        task_id=f"maxsteps-{uuid.uuid4().hex[:8]}",
        task_type="code",
        max_steps=3,
        description="LOOP: keep computing",
    )
    where = await produce(bootstrap, [(task, 2)])
    async with code_runtime() as (_, runtime), Committed(bootstrap, group) as committed:
        worker = ObservedWorker(runtime, "code", bootstrap, concurrency=2, group_id=group)
        async with running(worker) as wt:
            await until(
                lambda: _at(committed, 2, where[task.task_id][1] + 1),
                "the task committed",
                workers=(wt,),
            )
    events = (await events_of(bootstrap, {task.task_id}))[task.task_id]
    assert kinds(events) == ["started", "step", "step", "step", "finished"]
    assert [e.step.step_id for e in events[1:4]] == [1, 2, 3]
    assert all(
        e.step.action_type == "code_execution" and e.step.observation.strip() == "42"
        for e in events[1:4]
    )
    fin = events[-1].finish
    assert not fin.success and fin.error_type == "max_steps" and fin.step_count == 3


async def test_429s_lower_the_worker_concurrency_and_every_task_finishes(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "throttle")
    concurrency = 4
    limit = AdaptiveLimit(initial=concurrency, maximum=concurrency)
    after_overload: list[int] = []
    overload = limit.on_overload

    def recording_overload() -> None:
        overload()
        after_overload.append(limit.current)

    limit.on_overload = recording_overload
    tasks = [
        Task(
            task_id=f"throttle-{uuid.uuid4().hex[:8]}-{i}",
            task_type="code",
            description=f"THROTTLE {i}",
        )
        for i in range(6)
    ]
    ids = [t.task_id for t in tasks]
    where = await produce(bootstrap, [(t, 4) for t in tasks])
    options = {"limit": limit, "backoff_base": 0.01, "backoff_cap": 0.05, "attempts": 10}
    async with code_runtime(options) as (stub, runtime), Committed(bootstrap, group) as committed:
        stub.release.clear()  # hold successes: the limit stays lowered until we saw it used
        worker = ObservedWorker(
            runtime, "code", bootstrap, concurrency=concurrency, group_id=group, limit=limit
        )
        async with running(worker) as wt:
            await until(
                lambda: min(worker.capacities) < concurrency,
                "the worker to lower its concurrency",
                workers=(wt,),
            )
            stub.release.set()
            await until(
                lambda: _at(committed, 4, where[ids[-1]][1] + 1),
                "every task committed",
                workers=(wt,),
            )
    assert len(after_overload) == 6 and min(after_overload) >= 1  # six 429s, floor 1
    assert min(after_overload) < concurrency
    assert 1 <= min(worker.capacities) < concurrency
    assert_intake_within_capacity(worker)
    assert worker.stats.finished == 6 and worker.stats.succeeded == 6
    events = await events_of(bootstrap, set(ids))
    for i in ids:
        assert kinds(events[i]) == ["started", "step", "finished"], kinds(events[i])
        assert events[i][-1].finish.success and events[i][-1].finish.final_result == "ok"


# --------------------------------------------------------------------------- 5. fetched, then
# revoked


async def test_task_fetched_just_before_a_revocation_is_not_started_by_the_old_owner(kafka):
    """A rebalance can land between getmany() handing a record over and the task starting
    (the worker awaits its "running" commit in between). The record belongs to whoever owns the
    partition after the rebalance: the old owner must not start it, or it runs twice."""
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "fetched")
    runtime = GateRuntime()
    (task,) = gated_tasks("fetched", 1)
    runtime.gates[task.task_id].set()  # no gating: it finishes as soon as it runs
    reached = asyncio.Event()
    armed = True
    a: ObservedWorker

    async def hold_until_revoked(commit: dict[int, int]) -> None:
        # Hold the commit _start_batch makes before starting the task, until the rebalance
        # has begun at A (fault injection: it only widens a real window). A rebalance first
        # holds every partition (streams/runtime/rebalance.py), then revokes those that moved.
        nonlocal armed
        if armed and 0 in commit:
            armed = False
            reached.set()
            await until(lambda: a.rebalance.settling or a.revocations, "A's rebalance to begin")

    a = ObservedWorker(
        runtime,
        "code",
        bootstrap,
        concurrency=4,
        group_id=group,
        runtime_id="worker-A",
        consumer_options=FAST_GROUP,
        before_commit=hold_until_revoked,
    )
    b = ObservedWorker(
        runtime,
        "code",
        bootstrap,
        concurrency=4,
        group_id=group,
        runtime_id="worker-B",
        consumer_options=FAST_GROUP,
    )
    async with Committed(bootstrap, group) as committed, running(a) as at:
        where = await produce(bootstrap, [(task, 0)])
        await until(reached.is_set, "A to fetch the task", workers=(at,))
        async with running(b) as bt:
            await until(
                lambda: _at(committed, 0, where[task.task_id][1] + 1),
                "the task committed",
                workers=(at, bt),
            )
            # both members settled: nothing else is going to run it
            await until(
                lambda: (
                    a.consumer.assignment()
                    and b.consumer.assignment()
                    and not a.inflight
                    and not b.inflight
                ),
                "both workers idle",
                workers=(at, bt),
            )
    events = (await events_of(bootstrap, {task.task_id}))[task.task_id]
    attempts = attempts_of(events)
    assert len(attempts) == 1, [(e.runtime_id, e.event_type) for e in events]
    assert runtime.started == [task.task_id]


# --------------------------------------------------------------------------- 6. priority lanes
# Progress counted in task starts (slots), never in seconds. The kill -9 scenario across lanes
# is in tests/faults/test_faults.py; the pure scheduling rule in tests/test_lanes.py.


async def produce_by_priority(bootstrap: str, tasks: list[Task]) -> None:
    """As `adp produce` does: each task to its type's lane for its priority, keyed by task_id."""
    producer = await clients.start(clients.producer(bootstrap))
    try:
        for task in tasks:
            await producer.send(
                topics.topic_for_task(task.task_type, task.priority),
                codec.encode(task),
                key=task.task_id.encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def test_an_urgent_task_takes_the_next_free_slot_of_a_runtime_saturated_by_200(kafka):
    bootstrap = kafka.bootstrap
    group = await fresh_group(bootstrap, "urgent")
    runtime = GateRuntime()
    backlog = gated_tasks("backlog", 200, priority=1)
    (urgent,) = gated_tasks("urgent", 1, priority=10)
    await produce_by_priority(bootstrap, backlog)
    worker = ObservedWorker(runtime, "code", bootstrap, concurrency=4, group_id=group)
    async with running(worker) as wt:
        ws = (wt,)
        await until(
            lambda: len(runtime.started) == 4 and worker.intake.waiting()["low"] == 4,
            "every slot busy with low-priority work, more of it fetched",
            workers=ws,
        )
        await produce_by_priority(bootstrap, [urgent])
        # the high lane keeps fetching while every slot is busy
        await until(
            lambda: worker.intake.waiting()["high"] == 1,
            "the urgent task to be fetched",
            workers=ws,
        )
        assert len(runtime.started) == 4

        async def free_one_slot() -> str:
            running_now = [i for i in runtime.started if not runtime.gates[i].is_set()]
            before = len(runtime.started)
            runtime.gates[running_now[0]].set()
            await until(
                lambda: len(runtime.started) > before, "the freed slot to be filled", workers=ws
            )
            return runtime.started[before]

        # slots freed from the urgent task's produce to its start: the very first one
        assert await free_one_slot() == urgent.task_id
        # and the backlog goes on behind it, oldest first per partition
        next_low = await free_one_slot()
        assert next_low.startswith("backlog-")
        for task in [*backlog, urgent]:  # let everything running finish for a quick stop
            runtime.gates[task.task_id].set()
    assert runtime.started.count(urgent.task_id) == 1 and runtime.cancelled == []
    events = (await events_of(bootstrap, {urgent.task_id}))[urgent.task_id]
    assert [e.event_type for e in events] == ["started", "step", "step", "finished"]
    assert events[-1].finish.success


async def test_a_low_lane_keeps_its_minimum_share_while_high_work_keeps_coming(kafka):
    bootstrap = kafka.bootstrap
    share = 0.25
    group = await fresh_group(bootstrap, "share")
    runtime = GateRuntime()
    high = gated_tasks("flood", 60, priority=9)
    low = gated_tasks("trickle", 12, priority=2)
    for task in high + low:  # no gating: each task finishes as soon as it starts
        runtime.gates[task.task_id].set()
    low_ids = {t.task_id for t in low}
    await produce_by_priority(bootstrap, low + high)
    worker = ObservedWorker(
        runtime, "code", bootstrap, concurrency=2, group_id=group, min_share=share
    )
    async with running(worker) as wt:
        await until(
            lambda: low_ids <= set(runtime.started) and not worker.inflight,
            "every low-priority task to finish",
            workers=(wt,),
        )
    order = runtime.started
    lanes = "".join("L" if i in low_ids else "H" for i in order)
    last_low = lanes.rindex("L")
    # the high lane never ran dry until the last low start: the low lane's starts were its
    # guaranteed share, not leftovers
    assert "H" in lanes[last_low:], lanes
    # Counted in slots, from the first start after which the runtime had fetched work of both
    # lanes (the very first fetch may bring one lane a poll before the other)...
    both = max(lanes.index("L"), lanes.index("H"))
    per_low = round(1 / share)
    first = lanes.index("L", both)
    assert first - both < per_low, lanes
    # ... a low start comes at least every 1/share starts ...
    gaps = [len(run) for run in lanes[first + 1 : last_low].split("L")]
    assert max(gaps) <= per_low - 1, lanes
    # ... and not more often: while the high lane has work, it gets every other slot
    assert min(gaps) >= per_low - 1, lanes
    assert len(order) == len(set(order))  # each task ran once
