"""`adp status`: per task type, what was produced, what is pending, running, finished, failed.

Everything comes from the broker, nothing from local files, so it works from any host:
- produced: end offsets of adp.tasks.<type> and its priority lanes (.high, .low), in total and
  per lane;
- pending: the runtime group's lag (produced minus committed);
- running: the offsets the runtimes listed as running in their last commit metadata
  (streams/poison.py keeps that list current);
- members: the group's members;
- finished / failed: distinct task_ids on adp.trajectories and their latest success flag.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import asdict, dataclass, field

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adp.schemas import codec
from adp.core.settings import settings
from adp.schemas.contracts import TaskType, Trajectory
from adp.streams import topics
from adp.streams.reader import behind


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
    # per priority lane (topics.LANES), highest first; produced/pending/running sum over these
    lanes: dict[str, LaneStatus] = field(default_factory=dict)


@dataclass
class StatusReader:
    """Keeps one consumer on adp.trajectories so `--watch` reads only what is new."""

    bootstrap: str
    outcomes: dict[str, tuple[str, bool]] = field(default_factory=dict)  # task_id -> type, ok

    async def __aenter__(self) -> "StatusReader":
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.consumer = AIOKafkaConsumer(topics.TRAJECTORIES, bootstrap_servers=self.bootstrap,
                                         group_id=None, auto_offset_reset="earliest",
                                         enable_auto_commit=False,
                                         max_partition_fetch_bytes=33554432)
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def read(self) -> list[TypeStatus]:
        await self._catch_up_trajectories()
        rows = []
        for task_type in TaskType:
            row = TypeStatus(task_type.value)
            group = topics.runtime_group(task_type.value)
            lane_topics = topics.lane_topics(task_type)
            parts = [TopicPartition(d["topic"], p["partition"])
                     for d in await self.admin.describe_topics(lane_topics)
                     for p in d["partitions"]]
            ends = await self.consumer.end_offsets(parts) if parts else {}
            committed = await self._committed(group, parts)
            row.lanes = {topics.lane_of(t).name: LaneStatus() for t in lane_topics}
            for tp, end in ends.items():
                lane = row.lanes[topics.lane_of(tp.topic).name]
                meta = committed.get(tp)
                done = meta.offset if meta and meta.offset >= 0 else 0
                lane.produced += end
                lane.pending += max(0, end - done)
                lane.running += _running(meta.metadata if meta else "")
            row.produced = sum(lane.produced for lane in row.lanes.values())
            row.pending = sum(lane.pending for lane in row.lanes.values())
            row.running = sum(lane.running for lane in row.lanes.values())
            row.members = await self._members(group)
            for kind, ok in self.outcomes.values():
                if kind == task_type.value:
                    row.finished += 1
                    row.failed += 0 if ok else 1
            rows.append(row)
        return rows

    async def _committed(self, group: str, parts: list[TopicPartition], tries: int = 20) -> dict:
        for _ in range(tries):
            try:
                return await self.admin.list_consumer_group_offsets(group, partitions=parts)
            except GroupCoordinatorNotAvailableError:
                # a fresh cluster creates __consumer_offsets on first use; it takes a moment
                await asyncio.sleep(0.5)
        raise click.ClickException(f"no group coordinator for {group} on {self.bootstrap}")

    async def _members(self, group: str) -> int:
        try:
            [response] = await self.admin.describe_consumer_groups([group])
            described = response.to_object()["groups"][0]
            return len(described["members"]) if described["error_code"] == 0 else 0
        except Exception:  # group never existed yet
            return 0

    async def _catch_up_trajectories(self) -> None:
        assigned = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(assigned)
        while await behind(self.consumer, ends):
            for records in (await self.consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    try:
                        t = codec.decode(r.value, expect=Trajectory)
                    except codec.DecodeError:
                        continue  # the aggregator never publishes these; skip foreign bytes
                    self.outcomes[t.task_id] = (t.task_type, t.success)


def _running(metadata: str) -> int:
    try:
        return len(json.loads(metadata).get("run", [])) if metadata else 0
    except (ValueError, AttributeError):
        return 0


def render_table(rows: list[TypeStatus]) -> Table:
    table = Table(title="adp status")
    for col in ("task type", "produced", "pending", "running", "finished", "failed",
                "runtimes"):
        table.add_column(col, justify="right" if col != "task type" else "left")
    for r in rows:
        table.add_row(r.task_type, str(r.produced), str(r.pending), str(r.running),
                      str(r.finished), f"[red]{r.failed}[/]" if r.failed else "0",
                      str(r.members))
        # the priority lanes under their type, once any lane but the default one was used
        if any(lane.produced for name, lane in r.lanes.items() if name != "default"):
            for name, lane in r.lanes.items():
                table.add_row(f"[dim]  {name} lane[/]", f"[dim]{lane.produced}[/]",
                              f"[dim]{lane.pending}[/]", f"[dim]{lane.running}[/]", "", "", "")
    return table


def render_progress(rows: list[TypeStatus]) -> Progress:
    progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[note]}"))
    for r in rows:
        if r.produced:
            progress.add_task(r.task_type, total=r.produced, completed=r.finished,
                              note=f"{r.running} running, {r.failed} failed")
    return progress


@click.command("status")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C, with progress bars.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers [ADP_BOOTSTRAP].")
def status_command(watch: bool, interval: float, as_json: bool, bootstrap: str | None) -> None:
    """Per task type: produced, pending (group lag), running, finished, failed, runtimes;
    produced, pending and running also per priority lane (high, default, low) once tasks went
    to a lane other than the default one."""

    async def main() -> None:
        async with StatusReader(bootstrap or settings().bootstrap) as reader:
            if not watch:
                rows = await reader.read()
                if as_json:
                    click.echo(json.dumps([asdict(r) for r in rows]))
                else:
                    Console().print(render_table(rows))
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            with Live(refresh_per_second=4) as live:
                while not stop.is_set():
                    rows = await reader.read()
                    live.update(Group(render_table(rows), render_progress(rows)))
                    try:
                        await asyncio.wait_for(stop.wait(), interval)
                    except TimeoutError:
                        pass

    asyncio.run(main())
