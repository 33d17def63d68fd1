"""What a runtime does with one task record it started (streams/runtime/worker.py decides which
records start, and when their offsets count as done).

- a record that is no task of this runtime's type goes to adp.dlq with the reason;
- a task that was running `poison_limit` times when its process died goes to adp.dlq
  (streams/runtime/poison.py); one with fewer strikes runs alone (the quarantine);
- any other task runs as one Attempt (streams/runtime/attempt.py), and its outcome is counted;
  an attempt that meets a dependency's outage is abandoned and the task runs again under a new
  one once the dependency is back (streams/runtime/breaker.py).

`handle` returns once the task's events (or its dead letter) are acknowledged by the broker;
cancelling it abandons the attempt without a finished event."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from adp.core import metrics
from adp.runtimes.base import Outcome, Runtime
from adp.runtimes.verify import VerifyContext
from adp.schemas.contracts import Task
from adp.streams.kafka import topics
from adp.streams.kafka.dlq import dlq_headers
from adp.streams.producer import task_from_record
from adp.streams.runtime.attempt import Attempt
from adp.streams.runtime.breaker import OutageBreaker
from adp.streams.runtime.poison import Quarantine

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    received: int = 0
    finished: int = 0
    succeeded: int = 0
    cancelled: int = 0  # running when their partition moved to another member
    kept_running: int = 0  # running through a rebalance that left their partition here
    handed_back: int = 0  # still running at the end of the drain on stop
    dead_lettered: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


@dataclass
class TaskHandler:
    runtime: Runtime
    task_type: str
    runtime_id: str
    verify_context: VerifyContext
    poison_limit: int
    stats: WorkerStats
    health: metrics.Health
    outages: OutageBreaker  # a dependency's outage pauses the runtime, it fails no task
    producer: AIOKafkaProducer | None = None  # set once the worker's producer is started
    quarantine: Quarantine = field(default_factory=Quarantine)  # a suspect task runs alone

    async def handle(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        strikes: int,
        on_agent_done: Callable[[], None],
    ) -> None:
        """Dead-letter or run the task of `record` (`strikes`: its poison strikes);
        `on_agent_done` is called when its agent is done and only the acks are awaited."""
        task = task_from_record(record.value)  # Avro, or plain JSON from kcat & co.
        if isinstance(task, Task) and task.task_type != self.task_type:
            task = f"task_type {task.task_type!r} does not belong on {tp.topic}"
        if isinstance(task, str):
            await self.dead_letter(record, task)
        elif strikes >= self.poison_limit:
            await self.dead_letter(
                record,
                f"poison: task {task.task_id} was running when its "
                f"runtime process died {strikes} times",
            )
        else:
            await self._run(task, strikes, on_agent_done)

    async def _run(self, task: Task, strikes: int, on_agent_done: Callable[[], None]) -> None:
        if strikes:
            log.warning(
                "task %s: its runtime died %d time(s) while running it; running it alone",
                task.task_id,
                strikes,
            )
        async with self.quarantine.slot(suspect=strikes > 0):
            # an outage abandons the attempt and runs the task again under a new one
            attempt, outcome = await self.outages.run(
                lambda: Attempt(self.producer, self.runtime_id, task, self.verify_context),
                self.runtime,
                on_agent_done,
            )
            self._count(outcome)
            log.info(
                "task %s: finished success=%s steps=%d%s%s",
                task.key,
                outcome.success,
                attempt.steps,
                f" ({outcome.error_type}: {outcome.error})" if outcome.error_type else "",
                f", verdict {attempt.verdict.status}" if attempt.verdict else "",
            )

    def _count(self, outcome: Outcome) -> None:
        self.stats.finished += 1
        self.health.progress()
        error_type = str(getattr(outcome.error_type, "value", outcome.error_type or ""))
        metrics.TASKS_FINISHED.labels(
            self.task_type, "success" if outcome.success else "failure", error_type
        ).inc()
        if outcome.success:
            self.stats.succeeded += 1
        elif error_type:
            self.stats.by_error[error_type] = self.stats.by_error.get(error_type, 0) + 1

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        self.stats.dead_lettered += 1
        metrics.DLQ_MESSAGES.labels("runtime").inc()
        await self.producer.send_and_wait(
            topics.DLQ,
            record.value,
            key=record.key,
            headers=dlq_headers(reason, record.topic, record.partition, record.offset),
        )
