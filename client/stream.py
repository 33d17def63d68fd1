"""GroupStream: complete groups of samples from adp.trajectories, delivered to a trainer exactly
once across crashes.

    async with GroupStream(group="grpo") as stream:
        async for group in stream:          # all k samples of a task, as the last one lands
            train(group)
            stream.ack(group)               # committed before the next group is handed out

It is a consumer group (`group`) on adp.trajectories. Every partition goes to one member
(client/assignor.py): a second trainer of the same name is a standby that takes over when the
first dies. What was delivered is committed per partition as a checkpoint (client/ledger.py):
the committed offset is the first record of a group not yet acknowledged, and the metadata
names the records read past it that belong to such groups, so a restarted trainer -- after a
SIGKILL, an OOM, a preempted node -- is handed every group it did not acknowledge, and none it
did. A group acknowledged but not yet committed when the trainer died comes again (with the
default commit_every=1 that is at most the one it held).

Groups whose samples cannot all finish are released with what they have once `deadline`
seconds passed since their first sample was published and the stream has read everything
written up to then; they are flagged (`complete` False). Filters: `min_spread` (drop groups
whose rewards differ by less: all passes or all failures teach GRPO nothing) and
`max_staleness` with `policy_version` (drop groups sampled by a policy more than that many
versions behind the trainer's; set `stream.policy_version` as training goes on).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Literal

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from adp.client.assignor import all_to_one
from adp.client.groups import Group, GroupAssembler, GroupFilter, GroupStats
from adp.client.ledger import Checkpoint
from adp.core.errors import AdpError
from adp.schemas import codec
from adp.schemas.contracts import Trajectory
from adp.streams.kafka import clients, oversized
from adp.streams.kafka.artifacts import ArtifactError, ArtifactFetcher
from adp.streams.kafka.topics import TRAJECTORIES

log = logging.getLogger(__name__)

METADATA_LIMIT = 4000  # Kafka's offset.metadata.max.bytes is 4096 by default
COMMIT_INTERVAL = 1.0  # seconds: records dropped or skipped are committed at most this often
DEADLINE_CHECK = 1.0  # seconds between looks for groups past their deadline


class GroupStreamError(AdpError):
    """The group stream cannot go on (another trainer holds the group, the broker refused)."""


class GroupStream:
    def __init__(
        self,
        conf: clients.Conn = None,
        group: str = "adp-trainer",
        *,
        min_spread: float | None = None,
        max_staleness: int | None = None,
        policy_version: int | None = None,
        deadline: float = 900.0,
        follow: bool = True,
        commit_every: int = 1,
        start: Literal["earliest", "latest"] = "earliest",
        revoke_wait: float = 60.0,
        max_poll_interval: float = 1800.0,
        metadata_limit: int = METADATA_LIMIT,
    ) -> None:
        self.conf, self.group = clients.connection(conf), group
        self.filters = GroupFilter(min_spread, max_staleness)
        self.policy_version = policy_version
        self.deadline, self.follow, self.start = deadline, follow, start
        self.commit_every = max(1, commit_every)
        self.revoke_wait, self.max_poll_interval = revoke_wait, max_poll_interval
        self.metadata_limit = metadata_limit
        self.stats = GroupStats()
        self.assembler: GroupAssembler | None = None
        self._ready: collections.deque[Group] = collections.deque()
        self._owns = False
        self._generation = 0
        self._assigned = asyncio.Event()
        self._all_acked = asyncio.Event()
        self._acks_pending = 0
        self._last_commit = 0.0
        self._committed: dict[int, Checkpoint] = {}
        self._stop_at: dict[TopicPartition, int] | None = None
        self._catchup: tuple[float, dict[TopicPartition, int]] | None = None
        self._next_deadline_check = 0.0
        self._overflow_said = False
        self.consumer = None
        self.admin = None
        self._chunks = ArtifactFetcher(self.conf)  # trajectories over the record limit

    # ---- lifecycle
    async def __aenter__(self) -> GroupStream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        self.admin = await clients.start(
            clients.admin(self.conf, client_id="adp-groups"), self.conf
        )
        self.consumer = await clients.start(
            clients.consumer(
                conf=self.conf,
                client_id=f"adp-groups-{self.group}",
                group_id=self.group,
                auto_offset_reset=self.start,
                partition_assignment_strategy=(all_to_one(lambda: self._owns),),
                max_poll_interval_ms=int(self.max_poll_interval * 1000),
            ),
            self.conf,
        )
        self.consumer.subscribe([TRAJECTORIES], listener=_Listener(self))

    async def close(self) -> None:
        """Commit what was acknowledged and leave the group (a standby takes over at once)."""
        try:
            if self.consumer is not None and self.assembler is not None:
                await self.commit()
        finally:
            if self.consumer is not None:
                await clients.close(self.consumer)
            if self.admin is not None:
                await clients.close(self.admin)
            await self._chunks.close()
            self.consumer = self.admin = None

    # ---- the trainer's side
    def __aiter__(self) -> GroupStream:
        return self

    async def __anext__(self) -> Group:
        while True:
            await self._commit_if_due()  # what the trainer acknowledged, before anything new
            if self._ready:
                group = self._ready.popleft()
                if self.assembler is not None and group.generation == self._generation:
                    self._all_acked.clear()
                    return group
                continue  # from an assignment revoked since: it comes again
            if await self._finished():
                await self.commit()
                raise StopAsyncIteration
            await self._fetch()
            await self._release_overdue()

    def ack(self, group: Group) -> None:
        """The trainer is done with `group`: it is committed before the next group is handed
        out (every `commit_every` acknowledgements), and never delivered again after that."""
        if self.assembler is None or not self.assembler.acknowledge(group):
            log.warning(
                "group %s was delivered before a rebalance; it will be delivered again",
                group.task_id,
            )
            return
        self._acks_pending += 1
        if not self.assembler.delivered:
            self._all_acked.set()

    async def commit(self) -> bool:
        """Commit every partition's checkpoint now; False if it could not be (said in the
        log; the last commit stands, so unacknowledged work is never lost)."""
        if self.assembler is None or self.consumer is None:
            return False
        checkpoints = self.assembler.checkpoints()
        offsets = {
            TopicPartition(TRAJECTORIES, p): OffsetAndMetadata(c.offset, c.encode())
            for p, c in checkpoints.items()
        }
        if any(len(m.metadata) > self.metadata_limit for m in offsets.values()):
            if not self._overflow_said:
                self._overflow_said = True
                log.warning(
                    "more open groups than a commit can name (%d records held); commits wait "
                    "until groups complete or pass their deadline",
                    sum(len(c.held) for c in checkpoints.values()),
                )
            return False
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of group %s failed: %s (retried)", self.group, exc)
            return False
        self._overflow_said = False
        self._acks_pending = 0
        self._last_commit = time.monotonic()
        self._committed = checkpoints
        return True

    # ---- reading
    async def _fetch(self, most: int = 5000) -> None:
        batches = await self.consumer.getmany(timeout_ms=200, max_records=most)
        assembler = self.assembler
        if assembler is None:
            return
        for tp, records in batches.items():
            for r in records:
                t, why = await self._decode(r)
                group = assembler.add(tp.partition, r.offset, r.timestamp, t, why)
                if group is not None and assembler.decide(group, self.policy_version):
                    self._ready.append(group)

    async def _release_overdue(self) -> None:
        """Release the groups past their deadline, once everything published up to their
        deadline was read (a late sample may still sit unread on another partition)."""
        assembler, now = self.assembler, time.monotonic()
        if assembler is None or not assembler.open or now < self._next_deadline_check:
            return
        self._next_deadline_check = now + DEADLINE_CHECK
        wall_ms = time.time() * 1000
        due_ms = wall_ms - self.deadline * 1000
        if min(g.first_seen_ms for g in assembler.open.values()) > due_ms:
            return
        if self._catchup is None:
            parts = list(self.consumer.assignment())
            self._catchup = (due_ms, await self.consumer.end_offsets(parts))
        seen_by, ends = self._catchup
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return
        self._catchup = None
        for group in assembler.overdue(int(seen_by)):
            if assembler.decide(group, self.policy_version):
                self._ready.append(group)

    async def _finished(self) -> bool:
        """Without `follow`: read up to where the topic ended when the stream began and
        delivered what completed (incomplete groups wait for a later run or their deadline)."""
        if self.follow:
            return False
        if self.assembler is None or not self._assigned.is_set():
            await self._wait_for_assignment()  # (again, after a rebalance)
            return False
        parts = self.consumer.assignment()
        if self._stop_at is None or set(self._stop_at) != parts:
            self._stop_at = await self.consumer.end_offsets(list(parts))
        for tp, end in self._stop_at.items():
            if await self.consumer.position(tp) < end:
                return False
        # everything there was is read: what is past its deadline now goes out as it is
        for group in self.assembler.overdue(int(time.time() * 1000 - self.deadline * 1000)):
            if self.assembler.decide(group, self.policy_version):
                self._ready.append(group)
        return not self._ready

    async def wait_assigned(self, timeout: float = 300.0) -> None:
        """Return once this stream owns the partitions (it joined its consumer group); raise
        GroupStreamError if none were assigned in `timeout` seconds, or another trainer of the
        same group holds them."""
        await self._wait_for_assignment(timeout)

    async def _wait_for_assignment(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._assigned.is_set():
            if time.monotonic() > deadline:
                raise GroupStreamError(
                    f"no partition of {TRAJECTORIES} assigned to group {self.group} in "
                    f"{timeout:.0f}s (does the topic exist at {self.conf.describe()}?)"
                )
            await self._fetch(100)  # joins the group; what it returns once assigned is kept
        if not self.consumer.assignment():
            raise GroupStreamError(
                f"another trainer holds group {self.group}; this one would only wait as a "
                "standby (use --follow, or another group name)"
            )

    async def _commit_if_due(self) -> None:
        if self.assembler is None:
            return
        if self._acks_pending >= self.commit_every:
            await self.commit()
            return
        if time.monotonic() - self._last_commit < COMMIT_INTERVAL:
            return
        if self._acks_pending or self.assembler.checkpoints() != self._committed:
            await self.commit()

    # ---- rebalances
    async def _revoked(self) -> None:
        """Before the partitions go: wait (up to revoke_wait) for the groups in the trainer's
        hands, commit, forget everything (the next owner starts from the commit)."""
        self._assigned.clear()
        if self.assembler is None:
            return
        if self.assembler.delivered:
            try:
                await asyncio.wait_for(self._all_acked.wait(), self.revoke_wait)
            except TimeoutError:
                log.warning(
                    "rebalance: %d delivered groups not acknowledged in %.0fs; they will be "
                    "delivered again",
                    len(self.assembler.delivered),
                    self.revoke_wait,
                )
        await self.commit()
        self.assembler = None
        self._ready.clear()

    async def _assigned_now(self, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        self._owns = bool(assigned)
        self._catchup = self._stop_at = None
        checkpoints = await self._checkpoints(sorted(assigned)) if assigned else {}
        for p, c in checkpoints.items():
            self.consumer.seek(TopicPartition(TRAJECTORIES, p), c.offset)
        self._committed = dict(checkpoints)
        self.assembler = GroupAssembler(checkpoints, self.filters, self._generation, self.stats)
        self._all_acked.set()
        self._assigned.set()
        if assigned:
            log.info(
                "group %s reads %d partitions of %s from its commit",
                self.group,
                len(assigned),
                TRAJECTORIES,
            )

    async def _checkpoints(self, parts: list[TopicPartition]) -> dict[int, Checkpoint]:
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=parts)
        fresh = [tp for tp in parts if tp not in committed or committed[tp].offset < 0]
        if fresh:
            where = (
                await self.consumer.beginning_offsets(fresh)
                if self.start == "earliest"
                else await self.consumer.end_offsets(fresh)
            )
        out = {}
        for tp in parts:
            if tp in fresh:
                out[tp.partition] = Checkpoint(where[tp], where[tp])
            else:
                meta = committed[tp]
                out[tp.partition] = Checkpoint.decode(meta.offset, meta.metadata or "")
        return out

    async def _decode(self, record) -> tuple[Trajectory | None, str]:
        """The record's trajectory (read from its chunks where it was over the record limit,
        streams/kafka/oversized.py), or None and why not."""
        if record.value is None:
            return None, "a tombstone"
        try:
            value = await oversized.value_of(record, self._chunks.fetch)
        except (ValueError, ArtifactError):
            return None, "a trajectory whose stored chunks cannot be read"
        try:
            return codec.decode(value, expect=Trajectory), ""
        except codec.DecodeError:
            return None, "not a trajectory record"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stream: GroupStream) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked) -> None:
        await self.stream._revoked()

    async def on_partitions_assigned(self, assigned) -> None:
        await self.stream._assigned_now(set(assigned))
