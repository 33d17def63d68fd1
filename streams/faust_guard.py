"""A guard against faust-streaming 0.15.3 skipping records.

At start-up recovery and at rebalances Faust can drop records it had already fetched: its
fetcher stops yielding a fetched batch midway (flow control, a generation change, a partition
not yet active) while the consumer's position has moved past the whole batch (seen here with
Kafka 4.1.1 in about a third of restarts; cf. faust-streaming #216/#221). The agent would never
see those events and their tasks would never complete.

adp.steps has no compaction and no transactions, so its offsets are contiguous. The aggregator
tracks the next offset it expects per partition (after an assignment: the group's committed
offset) and, when a record arrives beyond it, reads the hole itself (streams.reader.read_partition) and feeds
those records first, in order. Events Faust delivers again later are duplicates, which the
assembler drops. A hole at the very end of a partition is never followed by a record that
reveals it, so a timer also seeks Faust back on partitions whose end lies beyond what the agent
has seen and that delivered nothing for a while (Aggregator._refetch_stalled).
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The group's committed offset of a partition; 0 where it has none."""
    tp = TopicPartition(topic, partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return max(found.offset, 0) if found is not None else 0
