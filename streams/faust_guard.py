"""A guard against faust-streaming 0.15.3 skipping records, and the supervisor it needs.

At start-up recovery and at rebalances Faust can drop records it had already prefetched (its
flow control clears the queues after the fetch position moved on; seen here with Kafka 4.1.1,
cf. faust-streaming #216/#221). Faust then never commits past the hole, but the running worker
never sees those records: tasks would silently never complete until the next restart.

adp.steps has no compaction and no transactions, so offsets are contiguous: the aggregator
checks each record's offset against the previous one (or the group's committed offset after an
assignment). A gap that really holds records makes the worker exit with EXIT_RESTART before
anything after it is acknowledged, and `supervise()` -- the parent process of `adp aggregate` --
starts a fresh worker, which resumes from the committed offsets and the table's changelog.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger("streams.aggregator")

EXIT_RESTART = 75  # the worker asks its supervisor for a fresh start (skipped records)
CHILD_ENV = "ADP_AGGREGATOR_WORKER"


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The group's committed offset of a partition; 0 where it has none."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    tp = TopicPartition(topic, partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return max(found.offset, 0) if found is not None else 0


async def count_records(bootstrap: str, topic: str, partition: int, start: int, end: int) -> int:
    """How many records partition holds in [start, end) (transaction markers are no records)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        seen = 0
        deadline = time.monotonic() + 30
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=end - start)
            seen += sum(1 for m in batch.get(tp, []) if m.offset < end)
        return seen
    finally:
        await consumer.stop()


def supervise() -> int:
    """Run the Faust worker in a child process; start a fresh one when it asks (EXIT_RESTART).
    SIGTERM/SIGINT go to the child; its exit code is ours."""
    child: subprocess.Popen | None = None
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        child = subprocess.Popen([sys.executable, "-m", "adp.cli", *sys.argv[1:]],
                                 env={**os.environ, CHILD_ENV: "1"})
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        if code == EXIT_RESTART and not stopping:
            log.warning("aggregator worker asked for a restart; starting a fresh one")
            continue
        return 0 if stopping and code in (0, -signal.SIGTERM, -signal.SIGINT) else code
