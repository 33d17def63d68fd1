"""The flywheel on the real broker: `adp synthesize kafka --follow` beside a real aggregator and
a real code runtime (real sandbox), the scripted stub LLM over HTTP playing the proposer, the
tool-free answerer and the agent (tests/synthesis_data.py is its script).

- three hand-written tasks grow through two generations, stopping by itself at
  --max-generations; duplicates and tasks the model answers without tools are dropped and
  counted; every task and trajectory carries its lineage; exports filter by generation and
  method and the card counts them;
- the budget stops the flywheel, and stays spent for a restart of the same group;
- a synthesizer killed with SIGKILL mid-run and restarted produces no task twice and skips no
  parent; so does one that --max-tasks cut short and that runs again with a larger limit;
- without --follow, --out writes the tasks for review, and --solve keeps only what the
  runtimes solve at a pass rate within --pass-rate.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from adp.schemas import lineage as schema
from adp.schemas.contracts import Task
from adp.streams.kafka import topics
from adp.streams.kafka.reader import read_topic
from adp.streams.producer import task_from_record
from adp.streams.synthesis.lineage import task_id_for
from tests import synthesis_data as w
from tests.helpers import ADP, AdpProcess, scripted_stub, wait_for, write_tasks

pytestmark = pytest.mark.kafka

PRICES = {"custom/stub": {"input": 100.0, "output": 100.0}}  # USD per million tokens
K1 = "Print the powers of two up to 2 to the 8th and their sum."
K2 = "Print the first five prime numbers and their product."
C1 = "Print the multiples of 7 up to 70 and their sum."
S1 = "Print the numbers 1 to 5, their product, and the product of the first four."
KILL_SEEDS = [
    {"task_id": "seed-k1", "task_type": "code", "description": K1, "max_steps": 4,
     "verify": {"type": "answer", "match": "contains", "expected": "256"}},
    {"task_id": "seed-k2", "task_type": "code", "description": K2, "max_steps": 4,
     "verify": {"type": "answer", "match": "contains", "expected": "2310"}},
]  # fmt: skip
CAP_SEED = {
    "task_id": "seed-c1",
    "task_type": "code",
    "description": C1,
    "max_steps": 4,
    "verify": {"type": "answer", "match": "contains", "expected": "385"},
}
SOLVE_SEED = {"task_id": "seed-s1", "task_type": "code", "description": S1, "max_steps": 4,
              "verify": {"type": "answer", "match": "contains", "expected": "120"}}  # fmt: skip
EXTRA_GROWTH = [
    w.grows(
        K1,
        w.proposal(
            [
                ("Compute 2 to the 7th power with Python.", "128"),
                ("Compute the sum of the powers of two from 2^0 to 2^8 with Python.", "511"),
            ]
        ),
    ),
    # the first proposal for K2 hangs: the synthesizer is killed while it waits
    w.grows(
        K2,
        w.proposal(
            [
                ("Compute the product of the first five primes with Python.", "2310"),
                ("Compute the fifth prime number with Python.", "11"),
            ]
        ),
        faults=[{"hang": 40, "times": 1}],
    ),
    w.grows(
        C1,
        w.proposal(
            [
                ("Compute 7 times 6 with Python.", "42"),
                ("Compute the sum of the multiples of 7 up to 70 with Python.", "385"),
                ("Compute 7 times 9 with Python.", "63"),
            ]
        ),
    ),
    w.grows(
        S1,
        w.proposal(
            [
                ("Compute 5 factorial with Python.", "120"),  # solved: pass rate 1
                ("Compute the product of 1 to 4 with Python.", "24"),  # never: pass rate 0
            ]
        ),
    ),
]
EXTRA_AGENTS = [
    w.agent(K1, "p = [2 ** i for i in range(9)]\nprint(p)\nprint('sum', sum(p))", "256"),
    w.agent(K2, "p = [2, 3, 5, 7, 11]\nprint(p)\nprint('product', 2 * 3 * 5 * 7 * 11)", "2310"),
    w.agent(C1, "m = list(range(7, 71, 7))\nprint(m, 7 * 6, 7 * 9)\nprint('sum', sum(m))", "385"),
    w.agent(S1, "print([1, 2, 3, 4, 5])\nprint('product', 120)\nprint('first four', 24)", "120"),
    w.agent("Compute 5 factorial with Python.", "import math\nprint(math.factorial(5))", "120"),
    w.agent("Compute the product of 1 to 4 with Python.", "print(1 * 2 * 3 * 4 + 1)", "25"),
    w.agent("Compute ", "print('done')", "done"),  # every other synthesized task
]


@dataclass
class Factory:
    workdir: Path
    out: Path
    env: dict[str, str]
    stub: str
    processes: list[AdpProcess]

    def adp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*ADP, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def produce(self, name: str, tasks: list[dict]) -> None:
        done = self.adp("produce", "--quiet", str(write_tasks(self.workdir / name, tasks)))
        assert done.returncode == 0, done.stdout + done.stderr

    def synthesizer(self, name: str, *args: str) -> AdpProcess:
        return AdpProcess(
            ["synthesize", "kafka", "--follow", "--json", *args],
            self.workdir / f"{name}.log",
            self.env,
        ).start()

    def check(self) -> None:
        for p in self.processes:
            p.assert_alive()

    def stored(self) -> dict[str, dict]:
        return {
            str(p.relative_to(self.out))[:-5]: json.loads(p.read_text())
            for p in self.out.rglob("*.json")
        }

    def wait_stored(self, keys: set[str], timeout: float = 240) -> None:
        wait_for(lambda: keys <= set(self.stored()), timeout, f"trajectories {keys}", self.check)


def task_records() -> list[Task]:
    """Every task record on the code task topics, in order."""

    async def read() -> list[Task]:
        found = []
        for topic in topics.lane_topics("code"):
            found += [task_from_record(r.value) for r in await read_topic(None, topic)]
        return found

    return asyncio.run(read())


def finished(proc: AdpProcess, timeout: float) -> dict:
    """The JSON report of a synthesizer that stops by itself."""
    wait_for(lambda: not proc.alive, timeout, f"adp {' '.join(proc.args)} to stop by itself")
    assert proc.proc.returncode == 0, proc.log()
    lines = [line for line in proc.log(lines=2000).splitlines() if line.startswith('{"parents"')]
    assert lines, proc.log()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def factory(kafka, tmp_path_factory) -> Factory:
    workdir = tmp_path_factory.mktemp("flywheel")
    (workdir / "prices.json").write_text(json.dumps(PRICES))
    script = w.world(*EXTRA_GROWTH, extra_agents=EXTRA_AGENTS)
    with scripted_stub(script, workdir) as url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": url,
            "ADP_LLM_MODEL": "stub",
            "ADP_METRICS_PORT": "0",
            "ADP_PRICES": str(workdir / "prices.json"),
            "ADP_HOME": str(workdir / "home"),
        }
        out = workdir / "trajectories"
        processes = [
            AdpProcess(["aggregate", "--out", str(out)], workdir / "agg.log", env).start(),
            AdpProcess(
                ["runtime", "code", "--concurrency", "4"], workdir / "code.log", env
            ).start(),
        ]
        f = Factory(workdir, out, processes[0].env, url, processes)
        try:
            yield f
        finally:
            for p in processes:
                p.stop()


def test_three_seeds_grow_through_two_generations_with_lineage(factory):
    flywheel = factory.synthesizer("flywheel", "--max-generations", "2", "--report",
                                   str(factory.workdir / "decisions.jsonl"))  # fmt: skip
    factory.produce("seeds.jsonl", w.SEEDS)
    report = finished(flywheel, 420)
    assert report["stop"]["reason"] == "max-generations", report
    synthesized = {t.task_id: t for t in task_records() if schema.lineage_of(t)}
    by_generation = Counter(
        (schema.generation_of(t), schema.method_of(t)) for t in synthesized.values()
    )
    assert by_generation == {(1, "atomic"): 3, (1, "depth"): 1, (1, "width"): 1, (2, "atomic"): 2}
    assert report["candidates"]["dropped"] == {"answered without tools": 2, "near duplicate": 1}
    assert report["produced"] == 7 and report["llm_calls"] > 0 and report["cost_usd"] > 0
    # a task's lineage: its parent trajectory, the value its spec checks and where it was seen
    fib_sum = task_id_for(["seed-fib"], "atomic", 1, 1)
    lineage = schema.lineage_of(synthesized[fib_sum])
    assert lineage["parents"][0]["task_id"] == "seed-fib" and lineage["answer"] == "88"
    assert "sum 88" in lineage["evidence"][0]["excerpt"]
    assert synthesized[fib_sum].verify["expected"] == 88
    proposal, check = lineage["exchanges"]  # raw, as for steps
    assert proposal["request"]["messages"][1]["content"].startswith("SYNTHESIZE TASKS")
    assert check["request"]["messages"][1]["content"].startswith("ANSWER WITHOUT TOOLS")
    assert lineage["cost_usd"] == pytest.approx(proposal["cost_usd"] + check["cost_usd"])
    mean = task_id_for([fib_sum], "atomic", 0, 2)
    assert schema.parent_ids(synthesized[mean]) == [fib_sum]
    # every task ran, and its trajectories carry the lineage
    keys = {"seed-fib", "seed-squares", "seed-cube", *synthesized}
    factory.wait_stored(keys)
    stored = factory.stored()
    assert all(stored[k]["success"] for k in synthesized), "every synthesized task was solved"
    assert schema.generation_of(stored[mean]) == 2 and schema.parent_ids(stored[mean]) == [fib_sum]
    decisions = [json.loads(line) for line in (factory.workdir / "decisions.jsonl").open()]
    tool_free = {d["question"]: d for d in decisions if d["reason"] == "answered without tools"}
    assert set(tool_free) == {"What is the 10th Fibonacci number?", "What is 6 squared?"}
    [exchange] = tool_free["What is the 10th Fibonacci number?"]["exchanges"]  # kept raw
    assert exchange["response"]["choices"][0]["message"]["content"].endswith("FINAL ANSWER: 34")


def test_exports_filter_by_generation_and_method_and_the_card_counts_them(factory):
    out = factory.workdir / "export"
    done = factory.adp("export", str(factory.out), "--format", "chat", "--out", str(out),
                       "--generation", "2", "--validation", "0", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    index = [json.loads(line) for line in (out / "index.jsonl").open()]
    assert len(index) == 2 and {r["task_id"].split("-")[0] for r in index} == {"syn2"}
    done = factory.adp("export", str(factory.out), "--format", "chat", "--out", str(out),
                       "--method", "width,depth", "--validation", "0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len((out / "index.jsonl").read_text().splitlines()) == 2
    done = factory.adp("export", str(factory.out), "--format", "chat", "--out", str(out))
    card = (out / "README.md").read_text()
    assert "| generation | method | trajectories |" in card
    assert "| 1 | atomic | 3 |" in card and "| 2 | atomic | 2 |" in card
    assert "| 0 | 3 | 67% (2/3) |" in card  # pass rate of the hand-written generation


def test_the_budget_stops_the_flywheel_and_stays_spent_across_restarts(factory):
    spend = factory.synthesizer("budget", "--group", "g-budget", "--budget-usd", "0.05")
    report = finished(spend, 180)
    assert report["stop"]["reason"] == "budget", report
    assert report["cost_usd"] >= 0.05 and report["produced"] == 0
    again = finished(
        factory.synthesizer("budget-2", "--group", "g-budget", "--budget-usd", "0.05"), 120
    )
    assert again["stop"]["reason"] == "budget" and again["llm_calls"] == 0
    assert again["cost_usd_before"] >= 0.05  # what the group committed as spent


def stub_faults(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.load(r).get("faults", 0)


def test_a_sigkilled_synthesizer_produces_nothing_twice_and_skips_no_parent(factory):
    factory.produce("kill-seeds.jsonl", KILL_SEEDS)
    factory.wait_stored({"seed-k1", "seed-k2"})
    k1 = {task_id_for(["seed-k1"], "atomic", i, 1) for i in (0, 1)}
    k2 = {task_id_for(["seed-k2"], "atomic", i, 1) for i in (0, 1)}
    first = factory.synthesizer("kill", "--group", "g-kill", "--max-generations", "1")
    wait_for(
        lambda: k1 <= {t.task_id for t in task_records()} and stub_faults(factory.stub) >= 1,
        180,
        "seed-k1's tasks produced while seed-k2's proposal hangs",
        first.assert_alive,
    )
    first.kill9()
    assert not k2 & {t.task_id for t in task_records()}
    report = finished(
        factory.synthesizer("kill-2", "--group", "g-kill", "--max-generations", "1"), 300
    )
    assert report["stop"]["reason"] == "max-generations", report
    counts = Counter(t.task_id for t in task_records())
    assert k1 | k2 <= set(counts), "no parent skipped"
    assert [t for t, n in counts.items() if n > 1] == [], "no task produced twice"


def test_max_tasks_leaves_the_rest_of_a_parent_for_the_next_run(factory):
    factory.produce("cap-seed.jsonl", [CAP_SEED])
    factory.wait_stored({"seed-c1"})
    children = {task_id_for(["seed-c1"], "atomic", i, 1) for i in range(3)}
    one = finished(factory.synthesizer("cap", "--group", "g-cap", "--max-tasks", "1"), 180)
    assert one["stop"]["reason"] == "max-tasks" and one["produced"] == 1, one
    assert len(children & {t.task_id for t in task_records()}) == 1
    three = finished(factory.synthesizer("cap-2", "--group", "g-cap", "--max-tasks", "3"), 180)
    assert three["stop"]["reason"] == "max-tasks" and three["produced"] == 2, three
    assert three["candidates"]["resumed"] >= 1
    counts = Counter(t.task_id for t in task_records())
    assert children <= set(counts) and all(counts[c] == 1 for c in children)


def test_out_writes_tasks_for_review_and_solve_keeps_them_by_pass_rate(factory):
    factory.produce("solve-seed.jsonl", [SOLVE_SEED])
    factory.wait_stored({"seed-s1"})
    out = factory.workdir / "review.jsonl"
    done = factory.adp("synthesize", "kafka", "--out", str(out), "--solve", "2", "--pass-rate",
                       "0.5:1", "--max-generations", "1", "--json", timeout=420)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["candidates"]["dropped"].get("pass rate outside --pass-rate") == 1, report
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["description"] for t in lines] == ["Compute 5 factorial with Python."]
    assert lines[0]["metadata"]["lineage"]["solve"] == {"samples": 2, "pass_rate": [0.5, 1.0]}
    assert Task.from_line(lines[0]).samples == 2  # a line `adp produce` reads as it is
    # both candidates ran twice on the real runtime
    trials = {t.key for t in task_records() if schema.lineage_of(t) and t.samples == 2}
    assert len(trials) == 4
