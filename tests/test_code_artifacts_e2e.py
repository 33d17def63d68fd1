"""Data-science code tasks end to end on the real broker: the scripted stub LLM writes the code,
`adp runtime code` runs it in bubblewrap with the sandbox's scientific environment, the files it
saves travel on adp.artifacts, `adp aggregate` stores them beside the trajectory, and
`adp replay` regenerates trajectory and files byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from adp.runtimes.tools.sandbox.bwrap import sandbox_available
from adp.runtimes.tools.sandbox.env import find_env
from tests.helpers import ADP, AdpProcess, scripted_stub, trajectory_files, wait_for, write_tasks

ENV = find_env() if sandbox_available() is None else None
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        ENV is None,
        reason="needs bubblewrap and the built sandbox environment (`adp sandbox build`)",
    ),
]

CODE = {
    "art-numpy": "import numpy as np\nm = np.array([[2.0, 1, 0], [1, 3, 1], [0, 1, 4]])\n"
    "print('det', round(float(np.linalg.det(m)), 6))\n",
    "art-pandas": "import pandas as pd\n"
    "d = pd.DataFrame({'x': [1, 2, 3, 4, 5, 6, 7, 8], 'y': [2.5, 0, 1, 8, 3, 3, 7, 1]})\n"
    "print(d.describe())\n",
    "art-hist": "import matplotlib.pyplot as plt\n"
    "plt.hist([1, 2, 2, 3, 3, 3, 4, 4, 5], bins=5)\nplt.savefig('hist.png')\n"
    "print('saved')\n",
    "art-tree": "from sklearn.tree import DecisionTreeClassifier\n"
    "X = [[0, 0], [1, 1], [0, 1], [1, 0], [2, 2], [2, 0], [0, 2], [3, 3]]\n"
    "y = [0, 1, 0, 0, 1, 1, 0, 1]\n"
    "t = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)\n"
    "print('accuracy', t.score(X, y))\n",
    "art-big": "import os\nopen('big.bin', 'wb').write(os.urandom(9 << 20))\nprint('wrote')\n",
    "art-isolated": "import importlib.util\n"
    "print([m for m in ('adp', 'aiokafka', 'pydantic') if importlib.util.find_spec(m)])\n",
}
LATER = (
    "import pandas as pd\nprint(pd.read_csv('data.csv')['v'].sum())\n"  # step 2 of art-two-steps
)


def script() -> list[dict]:
    rules = [
        {"match": f"^{tid} ", "replies": [f"```python\n{code}```", "FINAL ANSWER: done"]}
        for tid, code in CODE.items()
    ]
    rules.append(
        {
            "match": "^art-two-steps ",
            "replies": [
                "```python\nimport pandas as pd\n"
                "pd.DataFrame({'v': [1, 2, 39]}).to_csv('data.csv')\n```",
                f"```python\n{LATER}```",
                "FINAL ANSWER: 42",
            ],
        }
    )
    return rules


def outside(code: str) -> str:
    """The program's output with the sandbox environment's interpreter, outside the sandbox."""
    return subprocess.run(
        [ENV.python, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        cwd="/tmp",
    ).stdout


def test_scientific_code_and_its_files_through_kafka(kafka, tmp_path):
    out, regen = tmp_path / "trajectories", tmp_path / "regen"
    ids = [*CODE, "art-two-steps"]
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {
                "task_id": t,
                "task_type": "code",
                "description": f"{t} task",
                "max_steps": 4,
                "timeout": 180,
            }
            for t in ids
        ],
    )
    with scripted_stub(script(), tmp_path) as url:
        env = {
            "ADP_BOOTSTRAP": kafka.bootstrap,
            "ADP_LLM_BASE_URL": url,
            "ADP_LLM_MODEL": "stub",
            "ADP_METRICS_PORT": "0",
            "ADP_HOME": str(tmp_path / "home"),
        }
        procs = [
            AdpProcess(["aggregate", "--out", str(out)], tmp_path / "agg.log", env).start(),
            AdpProcess(["runtime", "code", "--concurrency", "2"], tmp_path / "rt.log", env).start(),
        ]
        try:
            produced = subprocess.run(
                [*ADP, "produce", "--quiet", str(tasks)],
                env=procs[0].env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert produced.returncode == 0, produced.stdout + produced.stderr
            wait_for(
                lambda: out.exists() and len(list(out.glob("art-*.json"))) >= len(ids),
                300,
                f"{len(ids)} trajectories",
                check=lambda: [p.assert_alive() for p in procs],
            )
        finally:
            for p in procs:
                p.stop()
    files = trajectory_files(out)
    runs = {tid: files[tid]["steps"][0] for tid in ids}
    for tid in ("art-numpy", "art-pandas", "art-tree"):
        assert runs[tid]["success"] and runs[tid]["observation"] == outside(CODE[tid]), tid
    assert runs["art-numpy"]["observation"] == "det 18.0\n"
    assert "mean   4.50000  3.187500" in runs["art-pandas"]["observation"]
    assert runs["art-tree"]["observation"] == "accuracy 0.875\n"
    assert runs["art-isolated"]["observation"] == "[]\n"  # the platform's venv is not inside

    # the histogram: recorded in the step, its bytes beside the trajectory, sha256 matching
    (png,) = runs["art-hist"]["artifacts"]
    assert (png["name"], png["media_type"], png["kept"]) == ("hist.png", "image/png", True)
    assert png["location"]["topic"] == "adp.artifacts" and png["location"]["offsets"]
    stored = (out / "art-hist" / "step-1" / "hist.png").read_bytes()
    assert stored[:8] == b"\x89PNG\r\n\x1a\n" and len(stored) == png["size"]
    assert hashlib.sha256(stored).hexdigest() == png["sha256"]
    assert runs["art-hist"]["observation"].startswith("saved\n[saved files: hist.png (")

    # too big: recorded with its size and why, bytes not kept, nothing stored
    (big,) = runs["art-big"]["artifacts"]
    assert big["kept"] is False and big["size"] == 9 << 20 and big["location"] is None
    assert big["note"] == "larger than the 8 MiB per-file limit"
    assert (
        "[not kept: big.bin (9.0 MiB): larger than the 8 MiB per-file limit]"
        in runs["art-big"]["observation"]
    )
    assert not (out / "art-big").exists()

    # one working directory per attempt: step 2 read the CSV step 1 saved
    two = files["art-two-steps"]["steps"]
    assert [a["name"] for a in two[0]["artifacts"]] == ["data.csv"]
    assert two[1]["observation"] == "42\n" and two[1]["artifacts"] == []
    assert (out / "art-two-steps" / "step-1" / "data.csv").read_text().splitlines()[1] == "0,1"

    # replay regenerates trajectories and files byte for byte
    done = subprocess.run(
        [*ADP, "replay", "--out", str(regen), "--json"],
        env=procs[0].env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for tid in ids:
        assert (regen / f"{tid}.json").read_bytes() == (out / f"{tid}.json").read_bytes(), tid
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(regen) for p in regen.rglob("*") if p.is_file())
    for rel in written:
        assert (regen / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert json.loads((regen / "art-hist.json").read_text())["steps"][0]["artifacts"][0] == png
