"""One execution of one task: where a step event is born on the wire.

A runtime reports each step (a StepReport) through `emit`; `Attempt.emit` numbers it (step_id
1..n in the order reported), wraps it in a StepEvent (task_id, sample_index,
attempt_id, runtime_id, timestamp) and sends it to adp.steps keyed by the sample's key (the
task_id; "<task_id>/<i>" for sample i > 0), so every event of a sample lands on one partition,
in order. The runtime's LLM calls carry the sample's temperature and seed (runtimes/base.py
`sampling`). `run` brackets the runtime with the `started` and
`finished` events, enforces the task's timeout, verifies the result when the task names a
verifier (runtimes/verify: the verdict rides on the finished event, the agent's claim beside it),
and returns only when the broker has acknowledged every event of the attempt (acks=all) -- only
then may the task's offset count as done. Files a step wrote go to adp.artifacts first
(streams/kafka/artifacts.py); the step event records where their bytes are.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from adp.core import metrics
from adp.core.errors import DependencyOutage
from adp.runtimes.base import Outcome, Runtime, StepReport, sampling
from adp.runtimes.verify import Subject, VerifyContext, verify
from adp.schemas import codec
from adp.schemas.contracts import (
    ArtifactLocation,
    ErrorType,
    EventType,
    Finish,
    Step,
    StepEvent,
    Task,
    Verdict,
)
from adp.streams.kafka import artifacts, topics
from adp.streams.runtime.step_encoding import StepEncoding

log = logging.getLogger(__name__)


class Attempt:
    """One execution of one task: owns its attempt_id and the events it sent."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        runtime_id: str,
        task: Task,
        verify_context: VerifyContext | None = None,
    ):
        self.producer, self.runtime_id, self.task = producer, runtime_id, task
        self.verify_context = verify_context or VerifyContext()
        self.attempt_id = uuid.uuid4().hex
        self.key = task.key.encode()
        self.steps = 0
        self.recorded: list[Step] = []  # what a verifier may look at (the agent's final code)
        self.verdict: Verdict | None = None
        self.pending: list[asyncio.Future] = []
        self.began = time.monotonic()  # reset when the attempt runs
        self.encoding = StepEncoding()

    async def send(self, event_type: EventType, **fields) -> asyncio.Future:
        event = StepEvent(
            event_type=event_type,
            task_id=self.task.task_id,
            attempt_id=self.attempt_id,
            task_type=self.task.task_type,
            runtime_id=self.runtime_id,
            timestamp=time.time(),
            sample_index=self.task.sample_index,
            **fields,
        )
        fut = await self.producer.send(topics.STEPS, codec.encode(event), key=self.key)
        self.pending.append(fut)
        return fut

    async def emit(self, report: StepReport | Step) -> None:
        # Step ids are the attempt's own count, so they are contiguous whatever the runtime does.
        self.steps += 1
        if isinstance(report, StepReport):
            step = await self._with_artifact_bytes_sent(report.numbered(self.steps), report.blobs)
        else:
            step = report.model_copy(update={"step_id": self.steps})
        metrics.STEP_DURATION.labels(self.task.task_type, step.action_type).observe(step.duration)
        if self.task.verify is not None:
            self.recorded.append(step)
        # linear in the attempt's steps, under the record limit: step_encoding.py
        step, blobs = self.encoding.for_wire(step)
        if blobs:
            step = await self._with_artifact_bytes_sent(step, blobs)
        await self.send(EventType.step, step=step)

    async def _with_artifact_bytes_sent(self, step: Step, blobs: dict[str, bytes]) -> Step:
        """Send the bytes of the step's kept files to adp.artifacts (acknowledged before the step
        event is sent) and record where they are in each Artifact."""
        if not step.artifacts:
            return step
        located: dict[str, ArtifactLocation] = {}
        out = []
        for artifact in step.artifacts:
            if artifact.location is not None:  # sent already
                out.append(artifact)
                continue
            data = blobs.get(artifact.sha256) if artifact.kept else None
            if data is None:
                out.append(
                    artifact
                    if not artifact.kept
                    else artifact.model_copy(
                        update={"kept": False, "note": "the runtime did not hand over its bytes"}
                    )
                )
                continue
            if artifact.sha256 not in located:
                located[artifact.sha256] = await artifacts.publish(
                    self.producer, data, artifact.sha256
                )
                metrics.ARTIFACT_BYTES.labels(self.task.task_type).inc(len(data))
            out.append(artifact.model_copy(update={"location": located[artifact.sha256]}))
        return step.model_copy(update={"artifacts": out})

    async def run(self, runtime: Runtime, on_sent: Callable[[], None] | None = None) -> Outcome:
        """`on_sent` is called once the finished event is handed to the producer, before its
        acknowledgement is awaited: the agent's work is over, so its slot may start the next
        task while this one only waits on the broker. A DependencyOutage (the LLM endpoint,
        sandbox or browser down) goes through unfinished: the attempt is abandoned, and the
        worker runs the task again under a new one once the dependency is back, or gives up
        on it with `finish` (streams/runtime/breaker.py)."""
        await self.send(EventType.started, task=self.task)
        self.began = time.monotonic()
        try:
            async with asyncio.timeout(self.task.timeout):
                with sampling(
                    self.task.sample_index, temperature=self.task.temperature, seed=self.task.seed
                ):
                    outcome = await runtime.run(self.task, self.emit)
        except TimeoutError:
            outcome = Outcome(
                False, "", f"task timed out after {self.task.timeout:g}s", ErrorType.timeout
            )
        except (asyncio.CancelledError, DependencyOutage):
            raise
        except Exception as exc:  # a runtime bug must not take the worker down
            log.exception("runtime failed on task %s", self.task.task_id)
            outcome = Outcome(False, "", f"{type(exc).__name__}: {exc}", ErrorType.runtime_error)
        if self.task.verify is not None:  # outside the agent's timeout and sampling context
            total = time.monotonic() - self.began
            self.verdict = await verify(
                self.task.verify,
                Subject(self.task, outcome.final_result, self.recorded, outcome.success),
                self.verify_context,
            )
            return await self.finish(outcome, on_sent, total)
        return await self.finish(outcome, on_sent)

    async def finish(
        self,
        outcome: Outcome,
        on_sent: Callable[[], None] | None = None,
        total: float | None = None,
    ) -> Outcome:
        """Send the finished event with `outcome` (`total`: the agent's time, default until
        now) and return once every event of the attempt is acknowledged."""
        total = time.monotonic() - self.began if total is None else total
        finish = Finish(
            success=outcome.success,
            final_result=outcome.final_result,
            error=outcome.error,
            error_type=outcome.error_type,
            total_duration=round(total, 6),
            step_count=self.steps,
            verdict=self.verdict,
        )
        await self.send(EventType.finished, finish=finish)
        if on_sent is not None:
            on_sent()
        # acks=all on every event of the attempt before the offset may be committed
        await asyncio.gather(*self.pending)
        return outcome
