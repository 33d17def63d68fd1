"""The sandbox's scientific environment and the files runs leave behind, on real bubblewrap with
the environment `make` builds (runtimes/tools/sandbox/env.py): the original product's six code
tasks run their natural solutions; plots and CSVs are collected as artifacts within limits; a
later run of an attempt sees what an earlier one saved; the platform is not importable inside."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from adp.runtimes.tools.sandbox import SandboxLimits
from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox, sandbox_available
from adp.runtimes.tools.sandbox.env import announced, find_env

REASON = sandbox_available()
ENV = find_env() if REASON is None else None
pytestmark = pytest.mark.skipif(
    ENV is None,
    reason=f"needs bubblewrap and the built sandbox environment (`adp sandbox build`): "
    f"{REASON or 'not built'}",
)

LIMITS = SandboxLimits(cpu_seconds=60, memory_mb=1024, wall_timeout=120)

# The original product's six code tasks, each with the solution a model would naturally write.
SIX_TASKS = {
    "numpy": """
import numpy as np
rng = np.random.default_rng(0)
a, b = rng.random((3, 3)), rng.random((3, 3))
p = a @ b
print("product", p.round(3).tolist())
print("determinant", round(float(np.linalg.det(p)), 6))
print("eigenvalues", np.round(np.linalg.eigvals(p), 4))
""",
    "pandas_matplotlib": """
import numpy as np, pandas as pd, matplotlib.pyplot as plt
points = pd.DataFrame({"x": np.random.default_rng(1).normal(size=100)})
print(points.describe())
points["x"].plot.hist(bins=10, title="100 points")
plt.savefig("histogram.png")
points.to_csv("points.csv", index=False)
""",
    "sorting": """
def quicksort(xs):
    if len(xs) <= 1:
        return xs
    pivot, rest = xs[0], xs[1:]
    left = quicksort([x for x in rest if x < pivot])
    return left + [pivot] + quicksort([x for x in rest if x >= pivot])
data = [5, 3, 9, 1, 7, 2]
print(quicksort(data), sorted(data) == quicksort(data))
""",
    "sklearn": """
import numpy as np, matplotlib.pyplot as plt
from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier
X, y = make_classification(n_samples=200, n_features=2, n_redundant=0, random_state=0)
tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
print("accuracy", tree.score(X, y))
xx, yy = np.meshgrid(np.linspace(X[:, 0].min() - 1, X[:, 0].max() + 1, 200),
                     np.linspace(X[:, 1].min() - 1, X[:, 1].max() + 1, 200))
zz = tree.predict(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
plt.contourf(xx, yy, zz, alpha=0.3)
plt.scatter(X[:, 0], X[:, 1], c=y, s=10)
plt.savefig("decision_boundary.png")
""",
    "oop": """
class Account:
    def __init__(self, owner, balance=0):
        self.owner, self.balance = owner, balance
    def deposit(self, amount):
        self.balance += amount
        return self
    def __repr__(self):
        return f"Account({self.owner!r}, {self.balance})"
class Savings(Account):
    rate = 0.05
    def add_interest(self):
        return self.deposit(self.balance * self.rate)
print(Savings("ada", 100).deposit(100).add_interest())
""",
    "recursion": """
import sys
def fib(n, memo={}):
    if n < 2:
        return n
    if n not in memo:
        memo[n] = fib(n - 1) + fib(n - 2)
    return memo[n]
def hanoi(n, a="A", b="B", c="C"):
    return [] if n == 0 else hanoi(n - 1, a, c, b) + [(a, c)] + hanoi(n - 1, b, a, c)
print(fib(80), len(hanoi(10)))
""",
}


@pytest.fixture(scope="module")
def sb() -> BubblewrapSandbox:
    return BubblewrapSandbox(env=ENV)


def outside(code: str) -> str:
    """What the same program prints with the environment's interpreter, outside any sandbox."""
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run(
        [ENV.python, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd="/tmp"
    ).stdout


async def test_the_six_code_tasks_run_their_natural_solutions(sb):
    async with sb.workspace() as ws:
        for name, code in SIX_TASKS.items():
            r = await sb.run_python(code, LIMITS, ws)
            assert r.ok, f"{name}: {r.observation()}"
            if name in ("numpy", "sorting", "oop", "recursion"):
                assert r.stdout == outside(code), name
    assert "True" in (await sb.run_python(SIX_TASKS["sorting"], LIMITS)).stdout


async def test_saved_files_are_collected_and_later_runs_see_them(sb):
    async with sb.workspace() as ws:
        first = await sb.run_python(SIX_TASKS["pandas_matplotlib"], LIMITS, ws)
        assert first.ok, first.observation()
        assert "count  100.000000" in first.stdout
        files = {f.name: f for f in first.files}
        assert set(files) == {"histogram.png", "points.csv"}
        png = files["histogram.png"]
        assert png.kept and png.media_type == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.sha256 == hashlib.sha256(png.data).hexdigest() and png.size == len(png.data)
        assert files["points.csv"].media_type == "text/csv"
        assert "[saved files: histogram.png (" in first.observation()
        assert "points.csv (" in first.observation()
        # a later run of the same attempt reads the CSV; only what it changes is collected
        second = await sb.run_python(
            "import pandas as pd\nd = pd.read_csv('points.csv')\nprint(len(d))\n"
            "d.head(3).to_json('head.json')\n",
            LIMITS,
            ws,
        )
        assert second.ok and second.stdout == "100\n", second.observation()
        assert [f.name for f in second.files] == ["head.json"]
        # plt.show() without savefig keeps nothing, and the observation says nothing was saved
        shown = await sb.run_python(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n", LIMITS, ws
        )
        assert shown.ok and shown.files == () and "saved files" not in shown.observation()


async def test_files_over_the_limits_are_listed_not_dropped(sb):
    limits = SandboxLimits(artifact_max_bytes=1000, max_artifacts=3, artifacts_max_bytes=1500)
    code = (
        "import os\nopen('big.bin', 'wb').write(os.urandom(5000))\n"
        "for name, n in (('a', 600), ('b', 800), ('c', 200), ('d', 10), ('e', 10)):\n"
        "    open(name + '.txt', 'w').write(name * n)\n"
        "os.symlink('/etc/passwd', 'link')\nos.mkfifo('pipe')\n"
    )
    r = await sb.run_python(code, limits)
    assert r.ok, r.observation()
    files = {f.name: f for f in r.files}
    assert list(files) == ["a.txt", "b.txt", "big.bin", "c.txt", "d.txt", "e.txt", "link", "pipe"]
    assert [n for n, f in files.items() if f.kept] == ["a.txt", "b.txt", "d.txt"]
    assert files["big.bin"].note == "larger than the 1000 bytes per-file limit"
    assert files["big.bin"].size == 5000 and len(files["big.bin"].sha256) == 64
    assert files["c.txt"].note == "over the 1500 bytes limit for all files of a run"
    assert files["e.txt"].note == "over the limit of 3 files per run"
    assert not files["link"].kept and "symbolic link" in files["link"].note  # never followed
    assert not files["pipe"].kept and files["pipe"].data is None
    assert (
        "[not kept: big.bin (4.9 KiB): larger than the 1000 bytes per-file limit]"
        in r.observation()
    )


async def test_the_platform_is_not_importable_inside(sb):
    code = (
        "import importlib.util, sys\n"
        "print([m for m in ('adp', 'aiokafka', 'pydantic', 'openai', 'faust') "
        "if importlib.util.find_spec(m)])\n"
        "print(sorted(p for p in sys.path if 'site-packages' in p or 'dist-packages' in p))\n"
        "print(sys.prefix == sys.base_prefix, sys.executable)\n"
    )
    r = await sb.run_python(code, LIMITS)
    assert r.ok, r.observation()
    found, packages, prefix = r.stdout.splitlines()
    assert found == "[]"
    assert re.fullmatch(r"\['/env/lib/python3\.\d+/site-packages'\]", packages), packages
    assert prefix == "False /env/bin/python"  # the sandbox environment's venv, not the runtime's
    assert sys.prefix not in r.stdout


def test_the_prompt_names_the_announced_libraries():
    assert ENV.libraries() == ["numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy"]
    assert announced("numpy==2\n# comment\nfoo[bar]>=1\n") == ["numpy", "foo"]
    assert os.access(ENV.python, os.X_OK)


def test_build_is_cached_by_the_requirement_lines(tmp_path):
    from adp.runtimes.tools.sandbox.env import DEFAULT_REQUIREMENTS, env_dir

    text = DEFAULT_REQUIREMENTS.read_text()
    commented, changed = tmp_path / "commented.txt", tmp_path / "changed.txt"
    commented.write_text("# a deployment's note\n" + text + "\n")
    changed.write_text(text + "statsmodels==0.14.5\n")
    assert env_dir(commented) == env_dir(DEFAULT_REQUIREMENTS) == ENV.root
    assert env_dir(changed) != ENV.root and env_dir(changed).parent == ENV.root.parent
    # building what is built is a no-op that names it
    done = subprocess.run(
        [sys.executable, "-m", "adp", "sandbox", "build"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and f"sandbox environment: {ENV.root}" in done.stdout, done.stderr
