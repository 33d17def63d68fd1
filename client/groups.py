"""Groups of samples from trajectory records: the pure part of the group stream (no Kafka here).

A group is the k samples of one task (its task_id; k is the task's `samples`), each a
trajectory with its verdict and reward. Records are fed in as they are read, with their
partition and offset; a group is complete when its k-th distinct sample lands. A group that
cannot complete (a sample that ended in the DLQ) is released with what it has once it is past
its deadline, flagged `complete=False`. Filters drop groups a trainer does not want (all
rewards alike: --min-spread; an old policy: max_staleness); what is dropped is acknowledged at
once, so it never holds the commit back. The ledgers (client/ledger.py) say, per partition,
which records are still held by a group that was not acknowledged.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adp.client.ledger import Checkpoint, PartitionLedger
from adp.connectors.export.passk import reward
from adp.connectors.export.tokens import row_record, token_sequences
from adp.schemas.contracts import Trajectory
from adp.schemas.conversation import ConversationError, with_full_requests

REMEMBERED = 100_000  # acknowledged groups remembered, to drop a late duplicate of a sample


@dataclass
class Sample:
    trajectory: Trajectory
    partition: int
    offset: int
    timestamp_ms: int

    @property
    def sample_index(self) -> int:
        return self.trajectory.sample_index

    @property
    def reward(self) -> float | None:
        return reward(self.trajectory)

    @property
    def verdict(self) -> str:
        return self.trajectory.verdict_status

    def full_trajectory(self) -> Trajectory:
        """The trajectory with every LLM request whole (adp.trajectories stores a request as
        what it adds to an earlier one: schemas/conversation.py); as stored if that fails."""
        try:
            return with_full_requests(self.trajectory)
        except ConversationError:
            return self.trajectory

    def tokens(self, on_drift: str = "split") -> list[dict[str, Any]]:
        """The sample as token rows (connectors/export/tokens.py): one row, or one per segment
        where a chat template rewrote history; none if a call carries no token ids."""
        seqs = token_sequences(self.trajectory, on_drift)
        return [row_record(self.trajectory, row, self.reward) for row in seqs.rows]


@dataclass
class Group:
    task_id: str
    task_type: str
    expected: int  # k: the samples the task asked for
    policy_version: int | None = None
    samples: dict[int, Sample] = field(default_factory=dict)  # sample_index -> sample
    complete: bool = False
    first_seen_ms: int = 0  # when its first sample was published (record timestamp)
    generation: int = 0  # which assignment of the stream delivered it

    @property
    def ordered(self) -> list[Sample]:
        return [self.samples[i] for i in sorted(self.samples)]

    @property
    def rewards(self) -> list[float | None]:
        return [s.reward for s in self.ordered]

    @property
    def spread(self) -> float:
        """max - min of the known rewards (0 with fewer than two)."""
        known = [r for r in self.rewards if r is not None]
        return max(known) - min(known) if len(known) > 1 else 0.0

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.expected) if i not in self.samples]

    def as_json(self, form: str = "summary", on_drift: str = "split") -> dict[str, Any]:
        """The group as one JSON object; each sample's `trajectory` (form "trajectories") or
        `tokens` rows (form "tokens") beside its summary."""
        samples = []
        for s in self.ordered:
            t = s.trajectory
            entry: dict[str, Any] = {
                "key": t.key,
                "sample_index": s.sample_index,
                "reward": s.reward,
                "verdict": s.verdict,
                "success": t.success,
                "steps": len(t.steps),
                "policy_version": t.policy_version,
            }
            if form == "trajectories":
                entry["trajectory"] = s.full_trajectory().as_json()
            elif form == "tokens":
                entry["tokens"] = s.tokens(on_drift)
            samples.append(entry)
        return {
            "group": self.task_id,
            "task_type": self.task_type,
            "policy_version": self.policy_version,
            "complete": self.complete,
            "expected": self.expected,
            "missing": self.missing,
            "rewards": self.rewards,
            "spread": self.spread,
            "samples": samples,
        }


@dataclass(frozen=True)
class GroupFilter:
    min_spread: float | None = None  # drop groups whose rewards differ by less
    max_staleness: int | None = None  # drop groups older than policy_version - this

    def why_not(self, group: Group, policy_version: int | None) -> str | None:
        if self.min_spread is not None and group.spread < self.min_spread:
            return "rewards spread less than --min-spread"
        if (
            self.max_staleness is not None
            and policy_version is not None
            and group.policy_version is not None
            and group.policy_version < policy_version - self.max_staleness
        ):
            return "policy older than --max-staleness versions"
        return None


@dataclass
class GroupStats:
    delivered: int = 0
    incomplete: int = 0  # of them, released at the deadline without every sample
    acknowledged: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> groups
    skipped: Counter = field(default_factory=Counter)  # reason -> records


class GroupAssembler:
    """Records in, groups out; ledgers say what is still held. One per assignment of the
    stream: a rebalance starts a new one from the committed checkpoints."""

    def __init__(
        self,
        checkpoints: dict[int, Checkpoint],
        filters: GroupFilter,
        generation: int = 0,
        stats: GroupStats | None = None,
    ):
        self.ledgers = {p: PartitionLedger(c) for p, c in checkpoints.items()}
        self.filters, self.generation = filters, generation
        self.open: dict[str, Group] = {}
        self.delivered: dict[str, Group] = {}  # handed to the trainer, not acknowledged
        self.acknowledged: OrderedDict[str, None] = OrderedDict()
        self.stats = stats if stats is not None else GroupStats()

    def add(
        self, partition: int, offset: int, timestamp_ms: int, t: Trajectory | None, why: str = ""
    ) -> Group | None:
        """Feed one record (t None: not a trajectory, `why`); returns a group it completed."""
        ledger = self.ledgers[partition]
        if ledger.delivered_before(offset):
            ledger.read(offset, hold=False)
            return None
        if t is None or t.task_id in self.acknowledged or t.task_id in self.delivered:
            ledger.read(offset, hold=False)
            self.stats.skipped[why if t is None else "a sample of a group already delivered"] += 1
            return None
        group = self.open.get(t.task_id)
        if group is None:
            group = self.open[t.task_id] = self._new_group(t, timestamp_ms)
        older = group.samples.get(t.sample_index)
        if older is not None:  # the same sample again (an aggregator resent it): keep the last
            self.ledgers[older.partition].release(older.offset)
            self.stats.skipped["a sample read twice (the last one kept)"] += 1
        group.samples[t.sample_index] = Sample(t, partition, offset, timestamp_ms)
        ledger.read(offset, hold=True)
        if len(group.samples) >= group.expected:
            group.complete = True
            return self.open.pop(t.task_id)
        return None

    def _new_group(self, t: Trajectory, timestamp_ms: int) -> Group:
        task = t.metadata.task if isinstance(t.metadata.task, dict) else {}
        samples = task.get("samples")
        return Group(
            t.task_id,
            t.task_type,
            samples if isinstance(samples, int) and samples > 0 else 1,
            t.policy_version,
            first_seen_ms=timestamp_ms,
            generation=self.generation,
        )

    def decide(self, group: Group, policy_version: int | None = None) -> bool:
        """True: hand the group to the trainer (held until acknowledged); False: a filter
        dropped it (acknowledged at once, counted). `policy_version`: the trainer's now."""
        why = self.filters.why_not(group, policy_version)
        if why is not None:
            self.stats.dropped[why] += 1
            self._let_go(group)
            return False
        self.delivered[group.task_id] = group
        self.stats.delivered += 1
        self.stats.incomplete += not group.complete
        return True

    def acknowledge(self, group: Group) -> bool:
        """The trainer is done with `group`; False if this assembler never delivered it (it
        came from an assignment that was revoked since: it will be delivered again)."""
        mine = self.delivered.get(group.task_id)
        if mine is not group:
            return False
        del self.delivered[group.task_id]
        self.stats.acknowledged += 1
        self._let_go(group)
        return True

    def _let_go(self, group: Group) -> None:
        for s in group.samples.values():
            self.ledgers[s.partition].release(s.offset)
        self.acknowledged[group.task_id] = None
        while len(self.acknowledged) > REMEMBERED:
            self.acknowledged.popitem(last=False)

    def overdue(self, deadline_ms: int) -> Iterable[Group]:
        """The open groups whose first sample was published at or before `deadline_ms`,
        taken out of the open ones (released incomplete)."""
        late = [k for k, g in self.open.items() if g.first_seen_ms <= deadline_ms]
        for key in late:
            yield self.open.pop(key)

    def checkpoints(self) -> dict[int, Checkpoint]:
        return {p: ledger.checkpoint() for p, ledger in self.ledgers.items()}
