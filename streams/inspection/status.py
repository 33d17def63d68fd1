"""`adp status`: per task type, what was produced, what is pending, running, finished, failed.

Everything comes from the broker, nothing from local files, so it works from any host:
- produced: end offsets of adp.tasks.<type> and its priority lanes (.high, .low), in total and
  per lane;
- pending: the runtime group's lag (produced minus committed);
- running: the offsets the runtimes listed as running in their last commit metadata
  (streams/runtime/poison.py keeps that list current);
- members: the group's members, and which partitions each one owns;
- paused: the runtimes that start no task because a dependency they need is down (the LLM
  endpoint, sandbox, browser), since when and why: a paused runtime writes that into the
  metadata of its commits (streams/runtime/breaker.py), and it counts while that runtime still
  owns the partition (a runtime that died paused is no member any more);
- finished / failed: distinct trajectories (one per task, or per sample of a task with k
  samples) on adp.trajectories and their latest success flag;
- verified / checked: of those, how many a verifier passed, of how many it judged (None where
  no trajectory of the type carries a verdict); unverifiable: verifiers that could not run;
  unverified: tasks that name no verifier;
- tokens and cost: the sums of their LLM calls (cost: priced calls only, core/pricing.py);
  llm_calls / token_calls: how many of those calls carry token ids (token-exact steps);
- pass@k: the unbiased estimator per task type (pass_at_k), and per model and per task
  (`pass_at_k(by)`), over the judged samples of each task (connectors/export/passk.py).

`StatusReader` is the one reader of these numbers: `adp status` prints them, `adp console`
(app/console/monitor.py) pushes them to a web page. It also reports any group's lag per
partition on any topic (the console shows the aggregator's on adp.steps).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import GroupCoordinatorNotAvailableError

from adp.connectors.export.passk import PassTable, model_of
from adp.schemas import codec
from adp.schemas.contracts import TaskType, Trajectory
from adp.streams.kafka import clients, oversized, topics
from adp.streams.kafka.artifacts import ArtifactError, ArtifactFetcher
from adp.streams.kafka.reader import behind


@dataclass
class Pause:
    """A runtime paused by an unavailable dependency, as its commit metadata says."""

    runtime: str
    since: float  # unix time
    why: str


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end: int  # the partition's end offset (what was produced)
    committed: int  # the group's committed offset (0 when it never committed)
    lag: int  # end - committed
    running: int  # offsets the owner listed as running in its last commit
    owner: str | None  # client id of the member it is assigned to
    paused: Pause | None = None  # the pause its owner's last commit reported


@dataclass
class Member:
    client_id: str
    host: str
    partitions: dict[str, list[int]]  # topic -> the partitions of it this member owns
    paused: Pause | None = None


@dataclass
class GroupStatus:
    """One consumer group on its topics: lag per partition and who owns which."""

    group: str
    topics: list[str]
    state: str = "Empty"
    partitions: list[PartitionLag] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def paused(self) -> list[Pause]:
        """The members paused now, each once."""
        return [m.paused for m in self.members if m.paused is not None]


@dataclass
class LaneStatus:
    produced: int = 0
    pending: int = 0
    running: int = 0


@dataclass
class TypeStatus:
    task_type: str
    produced: int = 0
    pending: int = 0
    running: int = 0
    finished: int = 0
    failed: int = 0
    members: int = 0
    verified: int | None = None  # verdicts that passed, where trajectories carry verdicts
    checked: int | None = None  # verdicts given (passed or failed; not errors, not unverified)
    unverifiable: int = 0  # a verifier was named but could not run
    unverified: int = 0  # no verifier named (or written before verification existed)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: no call was priced
    llm_calls: int = 0  # the agents' LLM calls
    token_calls: int = 0  # of them, with prompt and completion token ids
    # k -> {"pass": mean pass@k, "tasks": tasks averaged}, for the k the samples allow
    pass_at_k: dict[str, dict[str, float]] = field(default_factory=dict)
    # per priority lane (topics.LANES), highest first; produced/pending/running sum over these
    lanes: dict[str, LaneStatus] = field(default_factory=dict)
    group: GroupStatus | None = None
    paused: list[Pause] = field(default_factory=list)  # its runtimes paused by an outage


@dataclass(frozen=True)
class Outcome:
    """What status keeps of the latest trajectory of a key."""

    task_type: str
    success: bool
    status: str  # passed | failed | error | unverified
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    task_id: str = ""
    model: str = "none"
    llm_calls: int = 0
    token_calls: int = 0

    @classmethod
    def of(cls, t: Trajectory) -> Outcome:
        calls = [s.llm for s in t.steps if s.llm is not None]
        return cls(
            t.task_type,
            t.success,
            t.verdict_status,
            t.metadata.prompt_tokens,
            t.metadata.completion_tokens,
            t.metadata.cost_usd,
            t.task_id,
            model_of(t),
            len(calls),
            sum(bool(c.prompt_token_ids and c.completion_token_ids) for c in calls),
        )


@dataclass
class StatusReader:
    """Reads status from the broker without joining any group. Keeps one consumer on
    adp.trajectories so repeated reads (`--watch`, the console) fetch only what is new."""

    conf: clients.Conn  # Settings, or a bootstrap string (streams/kafka/clients.py)
    # trajectory key -> its latest Outcome; a caller may keep it across reconnections
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # reads on a fresh cluster, before __consumer_offsets exists: wait for the coordinator
    # (20 tries, 0.5 s apart: adp status), or 0: count nothing as committed yet and go on (a
    # reader that reads again soon, like the console, rather than stall a whole round)
    coordinator_tries: int = 20

    async def __aenter__(self) -> StatusReader:
        self.conf = clients.connection(self.conf)
        self.admin = clients.admin(self.conf, client_id="adp-status")
        self.consumer = clients.consumer(conf=self.conf, client_id="adp-status")
        self.chunks = ArtifactFetcher(self.conf)  # trajectories over the record limit
        try:
            await clients.start(self.admin, self.conf)
            await clients.start(self.consumer, self.conf)
            await self._assign_trajectories()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await clients.close(self.consumer)
        await clients.close(self.admin)
        await self.chunks.close()

    async def read(self) -> list[TypeStatus]:
        await self._catch_up_trajectories()
        by_type = self.pass_at_k("type")
        rows = []
        for task_type in TaskType:
            row = TypeStatus(task_type.value)
            lane_topics = topics.lane_topics(task_type)
            group = await self.group(topics.runtime_group(task_type.value), lane_topics)
            row.group = group
            row.lanes = {topics.lane_of(t).name: LaneStatus() for t in lane_topics}
            for p in group.partitions:
                lane = row.lanes[topics.lane_of(p.topic).name]
                lane.produced += p.end
                lane.pending += p.lag
                lane.running += p.running
            row.produced = sum(lane.produced for lane in row.lanes.values())
            row.pending = sum(lane.pending for lane in row.lanes.values())
            row.running = sum(lane.running for lane in row.lanes.values())
            row.members = len(group.members)
            row.paused = group.paused
            for o in self.outcomes.values():
                if o.task_type == task_type.value:
                    row.finished += 1
                    row.failed += 0 if o.success else 1
                    if o.status in ("passed", "failed"):
                        row.verified = (row.verified or 0) + (o.status == "passed")
                        row.checked = (row.checked or 0) + 1
                    row.unverifiable += o.status == "error"
                    row.unverified += o.status == "unverified"
                    row.prompt_tokens += o.prompt_tokens
                    row.completion_tokens += o.completion_tokens
                    row.llm_calls += o.llm_calls
                    row.token_calls += o.token_calls
                    if o.cost_usd is not None:
                        row.cost_usd = (row.cost_usd or 0.0) + o.cost_usd
            row.pass_at_k = by_type.get(task_type.value, {})
            rows.append(row)
        return rows

    def pass_table(self) -> PassTable:
        """The judged samples of every task read so far (the latest trajectory of each key)."""
        table = PassTable()
        for o in self.outcomes.values():
            table.add(o.task_id, o.task_type, o.model, o.status)
        return table

    def pass_at_k(self, by: str = "type") -> dict:
        """pass@k per task type (by="type"), per model ("model"), or per task ("task":
        task_id -> {k: pass@k}), from what the last `read` caught up with."""
        table = self.pass_table()
        return table.per_task() if by == "task" else table.report(by)

    async def partitions(self, *names: str) -> list[TopicPartition]:
        """The topics' partitions as the cluster has them now (none for a missing topic)."""
        return [
            TopicPartition(d["topic"], p["partition"])
            for d in await self.admin.describe_topics(list(names))
            for p in sorted(d["partitions"], key=lambda p: p["partition"])
        ]

    async def end_total(self, topic: str) -> int:
        """Records ever written to `topic`: the sum of its partitions' end offsets."""
        parts = await self.partitions(topic)
        return sum((await self.end_offsets(parts)).values()) if parts else 0

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        """End offsets of `parts`. The consumer keeps every partition it was asked about
        assigned (paused, so never fetched): aiokafka answers end_offsets for an unassigned
        partition only after a metadata refresh and a retry backoff, half a second a call."""
        known = self.consumer.assignment()
        if not set(parts) <= known:
            reading = {tp: await self.consumer.position(tp) for tp in self._trajectory_parts}
            self.consumer.assign(list(known | set(parts)))
            for tp, position in reading.items():
                self.consumer.seek(tp, position)
            self.consumer.pause(*self.consumer.assignment())
        return await self.consumer.end_offsets(parts)

    async def group(self, group: str, names: list[str]) -> GroupStatus:
        """`group`'s lag on its topics per partition, its members and what each one owns."""
        parts = await self.partitions(*names)
        ends = await self.end_offsets(parts) if parts else {}
        committed = await self._committed(group, parts) if parts else {}
        status = GroupStatus(group, list(names))
        status.state, status.members = await self._members(group, set(names))
        owners = {
            (t, p): m.client_id
            for m in status.members
            for t, ps in m.partitions.items()
            for p in ps
        }
        for tp in parts:
            meta = committed.get(tp)
            done = meta.offset if meta and meta.offset >= 0 else 0
            owner = owners.get((tp.topic, tp.partition))
            pause = paused_in(meta.metadata if meta else "")
            status.partitions.append(
                PartitionLag(
                    tp.topic,
                    tp.partition,
                    ends[tp],
                    done,
                    max(0, ends[tp] - done),
                    running_in(meta.metadata if meta else ""),
                    owner,
                    pause if pause is not None and pause.runtime == owner else None,
                )
            )
        pauses = {p.paused.runtime: p.paused for p in status.partitions if p.paused}
        for member in status.members:
            member.paused = pauses.get(member.client_id)
        return status

    async def _committed(self, group: str, parts: list[TopicPartition]) -> dict:
        for _ in range(self.coordinator_tries):
            try:
                return await self.admin.list_consumer_group_offsets(group, partitions=parts)
            except GroupCoordinatorNotAvailableError:
                # a fresh cluster creates __consumer_offsets on first use; it takes a moment
                await asyncio.sleep(0.5)
        if not self.coordinator_tries:
            try:
                return await self.admin.list_consumer_group_offsets(group, partitions=parts)
            except GroupCoordinatorNotAvailableError:
                return {}  # nothing committed that we could see yet: the next read tells
        raise clients.KafkaClientError(
            f"no group coordinator for {group} on {self.conf.describe()}"
        )

    async def _members(self, group: str, names: set[str]) -> tuple[str, list[Member]]:
        try:
            [response] = await self.admin.describe_consumer_groups([group])
            described = response.to_object()["groups"][0]
        except Exception:  # group never existed yet
            return "Empty", []
        if described["error_code"] != 0:
            return "Empty", []
        members = []
        for m in described["members"]:
            try:
                assigned = ConsumerProtocolMemberAssignment.decode(m["member_assignment"])
                owned = {t: sorted(ps) for t, ps in assigned.assignment if t in names and ps}
            except Exception:  # an empty or foreign assignment (mid-rebalance)
                owned = {}
            members.append(Member(m["client_id"], m["client_host"].lstrip("/"), owned))
        return described["state"], sorted(
            members, key=lambda m: (sorted(m.partitions.items()), m.client_id)
        )

    async def _assign_trajectories(self) -> None:
        self._trajectory_parts = await self.partitions(topics.TRAJECTORIES)
        self.consumer.assign(self._trajectory_parts)
        # Everything stays paused between reads: a fetch long-poll in flight would hold up
        # every other request on the connection (end offsets) for fetch_max_wait_ms.
        self.consumer.pause(*self._trajectory_parts)

    async def _catch_up_trajectories(self) -> None:
        ends = await self.consumer.end_offsets(self._trajectory_parts)
        if not await behind(self.consumer, ends):
            return
        self.consumer.resume(*self._trajectory_parts)
        try:
            await self._read_trajectories(ends)
        finally:
            self.consumer.pause(*self._trajectory_parts)

    async def _read_trajectories(self, ends: dict[TopicPartition, int]) -> None:
        while await behind(self.consumer, ends):
            for records in (await self.consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    try:
                        value = await oversized.value_of(r, self.chunks.fetch)
                        t = codec.decode(value, expect=Trajectory)
                    except (codec.DecodeError, ValueError, ArtifactError):
                        continue  # the aggregator never publishes these; skip foreign bytes
                    self.outcomes[t.key] = Outcome.of(t)


def running_in(metadata: str) -> int:
    try:
        return len(json.loads(metadata).get("run", [])) if metadata else 0
    except (ValueError, AttributeError):
        return 0


def paused_in(metadata: str) -> Pause | None:
    """The pause a runtime's commit metadata reports (streams/runtime/poison.py), if any."""
    try:
        note = json.loads(metadata).get("paused") if metadata else None
        return Pause(str(note["by"]), float(note["since"]), str(note["why"])) if note else None
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
