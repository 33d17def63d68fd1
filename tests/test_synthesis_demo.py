"""`adp demo --llm stub` runs the same flywheel the embedded model runs in `make demo`: three
hand-written tasks (examples/synthesis/seeds.jsonl) on a fresh demo cluster, then
`adp synthesize kafka --follow` grows two generations from the verified trajectories, with the
stub (examples/synthesis/stub-script.json) playing the agent and the synthesizer."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from adp.schemas import lineage
from adp.streams.kafka.broker.server import free_port_block
from tests.helpers import ADP

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "synthesis"


def test_the_demo_grows_three_seeds_into_a_dataset_several_times_larger(tmp_path):
    out = tmp_path / "trajectories"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ADP_HOME": str(tmp_path / "home"),
        "ADP_BOOTSTRAP": f"127.0.0.1:{free_port_block()}",
        "ADP_METRICS_PORT": "0",
    }
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith(("ADP_CACHE", "ADP_SANDBOX"))})
    done = subprocess.run(
        [*ADP, "demo", "--llm", "stub", "--tasks", str(EXAMPLES / "seeds.jsonl"),
         "--stub-script", str(EXAMPLES / "stub-script.json"), "--generations", "2",
         "--out", str(out), "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stored = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    grown = Counter(lineage.generation_of(t) for t in stored.values())
    assert grown == {0: 3, 1: 8, 2: 3}, grown
    assert all(t["success"] for t in stored.values())
    assert "the flywheel grew 11 new tasks" in done.stderr
    assert "stopped: max-generations" in done.stderr
    assert "Synthesized tasks" in done.stdout
