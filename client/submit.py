"""Submitting rollouts: tasks with k samples and the policy version that will sample them, sent
the way `adp produce` sends a file (streams/producer.py: one record per sample, each confirmed
by the broker before `submit` returns)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from adp.core.errors import BadInput
from adp.runtimes.verify import BadSpec, check_spec
from adp.schemas.contracts import Task
from adp.streams.kafka import clients
from adp.streams.kafka.topics import topic_for_task
from adp.streams.producer import ProduceReport, TaskPublisher, encode_samples, task_limit


async def submit(
    tasks: Iterable[Task | dict[str, Any]],
    *,
    samples: int | None = None,
    policy_version: int | None = None,
    conf: clients.Conn = None,
) -> ProduceReport:
    """Publish `tasks` (Task objects or tasks.jsonl-shaped dicts): `samples` is the k of tasks
    that name none, `policy_version` is set on every task (and so on every trajectory).
    Raises BadInput naming the first task that is not valid (nothing of it was sent),
    ProduceError if the broker refuses or cannot be reached."""
    if policy_version is not None and policy_version < 0:
        raise BadInput(f"policy_version must be 0 or more, not {policy_version}")
    conf = clients.connection(conf)
    limit = task_limit(conf)
    report = ProduceReport("adp.client.submit", conf.bootstrap)
    async with TaskPublisher(conf, report) as publisher:
        for n, item in enumerate(tasks, 1):
            task = _task(item, n)
            if policy_version is not None:
                task = task.model_copy(update={"policy_version": policy_version})
            records = encode_samples(task, samples, limit)
            if isinstance(records, str):
                raise BadInput(f"task {task.task_id}: {records}")
            report.tasks[task.task_type] += 1
            await publisher.publish(topic_for_task(task.task_type, task.priority), records)
        await publisher.drain()
    return report


def _task(item: Task | dict[str, Any], n: int) -> Task:
    if isinstance(item, Task):
        return item
    try:
        task = Task.from_line(item)
        check_spec(task.verify)
    except (ValidationError, ValueError, BadSpec) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        name = item.get("task_id") if isinstance(item, dict) else None
        raise BadInput(f"task {n} ({name or 'no task_id'}): {first}") from None
    return task
