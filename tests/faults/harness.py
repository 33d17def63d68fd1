"""A whole pipeline of real processes for fault injection: a stub LLM with latency (so tasks are
in flight when a fault hits), runtimes, the aggregator, and the checks every scenario ends with."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

from adp.schemas import codec
from adp.schemas.contracts import Trajectory, sample_key
from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks


class Pipeline:
    def __init__(
        self,
        tmp: Path,
        bootstrap: str,
        llm_url: str,
        prefix: str,
        n_tasks: int,
        priorities: tuple[int, ...] = (5,),
        samples: int = 1,
    ):
        self.tmp, self.bootstrap, self.prefix = tmp, bootstrap, prefix
        self.out = tmp / "trajectories"
        self.env = {
            "ADP_BOOTSTRAP": bootstrap,
            "ADP_LLM_BASE_URL": llm_url,
            "ADP_LLM_MODEL": "stub",
            "ADP_HOME": str(tmp / "home"),
            "ADP_METRICS_PORT": "0",
        }
        self.ids = [f"{prefix}-{i:04d}" for i in range(n_tasks)]
        # every sample of every task is one trajectory, named by its key (task_id[/i])
        self.samples = samples
        self.keys = [sample_key(t, i) for t in self.ids for i in range(samples)]
        # task i gets priorities[i % len]: with several, the tasks spread over priority lanes
        self.priorities = priorities
        self.runtimes: list[AdpProcess] = []
        self.aggregator: AdpProcess | None = None
        self._n = 0

    # ---- processes ---------------------------------------------------------------------------

    def start_runtime(self, concurrency: int = 8, bootstrap: str | None = None) -> AdpProcess:
        """A code runtime; `bootstrap`: another way to the cluster (a proxy) than the test's."""
        self._n += 1
        rt = AdpProcess(
            [
                "runtime",
                "code",
                "--concurrency",
                str(concurrency),
                "--runtime-id",
                f"code-fault-{self._n}",
            ],
            self.tmp / f"runtime-{self._n}.log",
            {**self.env, "ADP_BOOTSTRAP": bootstrap or self.bootstrap},
        ).start()
        self.runtimes.append(rt)
        return rt

    def start_aggregator(self, bootstrap: str | None = None, *args: str) -> AdpProcess:
        self._n += 1
        self.aggregator = AdpProcess(
            ["aggregate", "--out", str(self.out), *args],
            self.tmp / f"aggregator-{self._n}.log",
            {**self.env, "ADP_BOOTSTRAP": bootstrap or self.bootstrap},
        ).start()
        return self.aggregator

    def live_runtimes(self) -> list[AdpProcess]:
        return [r for r in self.runtimes if r.alive]

    def stop_all(self) -> None:
        for p in [*self.runtimes, self.aggregator]:
            if p is not None:
                p.stop()

    # ---- input and progress ------------------------------------------------------------------

    def produce(self) -> None:
        tasks = write_tasks(
            self.tmp / "tasks.jsonl",
            [
                {
                    "task_id": t,
                    "task_type": "code",
                    "description": f"Fault task {t}: print it.",
                    "max_steps": 4,
                    "timeout": 120,
                    "priority": self.priorities[i % len(self.priorities)],
                    **({"samples": self.samples} if self.samples > 1 else {}),
                }
                for i, t in enumerate(self.ids)
            ],
        )
        done = subprocess.run(
            [*ADP, "produce", "--quiet", str(tasks)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**self.aggregator.env, **self.env},
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def written(self) -> set[str]:
        """Keys of the trajectory files written: <task_id>.json and <task_id>/<i>.json."""
        if not self.out.exists():
            return set()
        return {
            p.relative_to(self.out).as_posix()[:-5]
            for p in self.out.rglob("*.json")
            if p.relative_to(self.out).as_posix().startswith(self.prefix)
        }

    def wait_written(self, count: int, timeout: float = 300) -> None:
        wait_for(
            lambda: len(self.written()) >= count,
            timeout,
            f"{count} trajectories of {self.prefix}",
            check=self._check_aggregator,
        )

    def _check_aggregator(self) -> None:
        if self.aggregator is not None:
            self.aggregator.assert_alive()

    # ---- the checks every scenario ends with -------------------------------------------------

    def verify(self) -> dict[str, int]:
        """Exact set equality in/out, steps contiguous, one attempt per task everywhere."""
        files = {k: json.loads((self.out / f"{k}.json").read_text()) for k in self.written()}
        assert set(files) == set(self.keys), (
            f"missing {sorted(set(self.keys) - set(files))[:10]}, "
            f"unexpected {sorted(set(files) - set(self.keys))[:10]}"
        )
        for task_id, t in files.items():
            steps = t["steps"]
            assert [s["step_id"] for s in steps] == list(range(1, len(steps) + 1)), task_id
            assert t["success"] is True, (task_id, t["metadata"])
        published = asyncio.run(self._published_trajectories())
        republished = 0
        for task_id in self.keys:
            versions = published.get(task_id, [])
            assert versions, f"{task_id} never reached adp.trajectories"
            attempts = {v.metadata.attempt_id for v in versions}
            # re-publishing after a crash is allowed, but only ever of the same attempt
            assert attempts == {files[task_id]["metadata"]["attempt_id"]}, (task_id, attempts)
            republished += len(versions) - 1
        return {
            "tasks_in": len(self.ids),
            "samples_in": len(self.keys),
            "files_out": len(files),
            "republished_identical": republished,
        }

    def counters(self) -> dict[str, int]:
        """What the processes said they did, summed from their final log lines."""
        totals: dict[str, int] = defaultdict(int)
        for log in self.tmp.glob("*.log"):
            text = log.read_text(errors="replace")
            for line in re.findall(r"aggregator stopped \((.*)\)", text) + re.findall(
                r"WorkerStats\((.*?)\)$", text, re.M
            ):
                for key, value in re.findall(r"(\w+)=(\d+)", line):
                    totals[key] += int(value)
        return dict(totals)

    def report(self, record_property) -> None:
        """Verify, then print and record the scenario's counts (shown with pytest -rP)."""
        counts = {**self.verify(), **self.counters()}
        print(f"FAULT-COUNTS {self.prefix}: {json.dumps(counts, sort_keys=True)}")
        record_property("counts", counts)

    async def _published_trajectories(self) -> dict[str, list[Trajectory]]:
        found: dict[str, list[Trajectory]] = defaultdict(list)
        for r in await read_topic(self.bootstrap, topics.TRAJECTORIES):
            if r.key and r.key.decode().startswith(self.prefix):
                found[r.key.decode()].append(codec.decode(r.value, expect=Trajectory))
        return found
