"""Is the factory idle? The consumer groups' lags, asked of the broker.

The flywheel stops on --max-generations once nothing can grow any more: no task is waiting or
running (the runtime groups have committed every task record: a runtime commits a task only after
its finished event is acknowledged), the aggregator has consumed every step, and this
synthesizer's group has consumed every trajectory. Everything comes from the broker, so a
restarted or scaled-out synthesizer judges exactly as a long-running one would.

Also reads the spending a flywheel committed with its offsets (accounting.spend_metadata), so
--budget-usd holds across restarts and across the members of a scaled-out group.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError

from adp.schemas.contracts import TaskType
from adp.streams.kafka import clients, topics
from adp.streams.synthesis.accounting import read_spend_metadata


class FactoryLag:
    def __init__(self, conf: clients.Conn, group: str, aggregator_group: str) -> None:
        self.conf = clients.connection(conf)
        self.group, self.aggregator_group = group, aggregator_group
        self.admin = clients.admin(self.conf, client_id="adp-synthesize-lag")
        self.consumer = clients.consumer(conf=self.conf, client_id="adp-synthesize-lag")

    async def __aenter__(self) -> FactoryLag:
        try:
            await clients.start(self.admin, self.conf)
            await clients.start(self.consumer, self.conf)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await clients.close(self.consumer)
        await clients.close(self.admin)

    def watched(self) -> list[tuple[str, list[str]]]:
        """(group, topics) of every stage a task passes through."""
        out = [(topics.runtime_group(t.value), topics.lane_topics(t)) for t in TaskType]
        out += [(self.aggregator_group, [topics.STEPS]), (self.group, [topics.TRAJECTORIES])]
        return out

    async def idle(self) -> bool:
        for group, names in self.watched():
            if await self.lag(group, names):
                return False
        return True

    async def lag(self, group: str, names: list[str]) -> int:
        parts = await self._partitions(names)
        if not parts:
            return 0
        ends = await self._ends(parts)
        committed = await self._committed(group, parts)
        return sum(max(0, ends[tp] - max(0, committed.get(tp, (0, ""))[0])) for tp in parts)

    async def spent(self) -> dict[TopicPartition, float]:
        """USD this flywheel's group committed as spent, per partition of adp.trajectories."""
        parts = await self._partitions([topics.TRAJECTORIES])
        committed = await self._committed(self.group, parts)
        return {tp: read_spend_metadata(meta) for tp, (_, meta) in committed.items()}

    async def _partitions(self, names: list[str]) -> list[TopicPartition]:
        return [
            TopicPartition(d["topic"], p["partition"])
            for d in await self.admin.describe_topics(list(names))
            if not d.get("error_code")
            for p in d["partitions"]
        ]

    async def _ends(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        # aiokafka answers end_offsets of unassigned partitions slowly (a metadata refresh per
        # call): keep every partition asked about assigned, paused, never fetched
        known = self.consumer.assignment()
        if not set(parts) <= known:
            self.consumer.assign(list(known | set(parts)))
            self.consumer.pause(*self.consumer.assignment())
        return await self.consumer.end_offsets(parts)

    async def _committed(
        self, group: str, parts: list[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, str]]:
        try:
            found = await self.admin.list_consumer_group_offsets(group, partitions=parts)
        except GroupCoordinatorNotAvailableError:  # a fresh cluster: nothing committed yet
            return {}
        return {tp: (meta.offset, meta.metadata or "") for tp, meta in found.items()}
