"""The wheel, as a user gets it: built from the source tree, installed into a fresh virtual
environment outside the checkout, and run there: `adp --version`, then produce -> runtime ->
aggregate on the real broker, from a working directory that has no source folder in sight.

The fresh environment gets the wheel alone (--no-deps, no index); its dependencies are read from
this test environment's site-packages through a .pth line (offline and quick), and the test
checks that every dependency the wheel declares is satisfied there, so a missing one in
pyproject.toml still fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from adp.schemas import codec
from tests.helpers import AdpProcess, trajectory_files, wait_for, write_tasks

ROOT = Path(__file__).resolve().parent.parent
# what a clone has and a build needs; local state and caches stay out of the copy
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".adp",
    "output",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "bench",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src") / "agent-data-platform"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [whl] = dist.glob("agent_data_platform-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel; returns its bin/ folder."""
    env_dir = tmp_path_factory.mktemp("fresh-venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-qq",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # dependencies only: this environment's site-packages, appended after the wheel's own
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def test_the_wheel_holds_one_package_with_its_data(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"adp"}, f"top-level entries besides adp: {top}"
    for data in (
        "adp/schemas/Task.avsc",
        "adp/schemas/StepEvent.avsc",
        "adp/schemas/Trajectory.avsc",
        "adp/app/site/index.html",
        "adp/streams/kafka/broker/pom.xml",
        "adp/streams/kafka/broker/log4j2.yaml",
        "adp/app/console/static/index.html",
        "adp/app/console/static/console.css",
        "adp/app/console/static/js/main.js",
        "adp/app/console/static/js/dom.js",
        "adp/schemas/history/v1/StepEvent.avsc",
        "adp/schemas/history/v2/Task.avsc",
        "adp/connectors/export/atif-v1.4.schema.json",
    ):
        assert data in names, f"{data} missing from the wheel"
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
        .decode()
    )
    assert "adp = adp.app.cli:main" in entry_points
    assert "code = adp.runtimes.code:CodeRuntime" in entry_points
    assert "judge = adp.runtimes.verify.judge:JudgeVerifier" in entry_points


def test_the_installed_wheel_runs_outside_the_checkout(fresh_env: Path, tmp_path: Path):
    """Imports come from the fresh environment, every declared dependency is met, and the
    command answers with its version."""
    probe = subprocess.run(
        [str(fresh_env / "python"), "-c", _PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert not report["unmet"], f"declared dependencies not met: {report['unmet']}"
    assert all(not p.startswith(str(ROOT)) for p in report["files"]), report["files"]
    assert report["schemas"] == 3 and report["site"]
    assert report["released"] == codec.released_versions()  # schemas/history ships too
    version = subprocess.run(
        [str(fresh_env / "adp"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert version.returncode == 0 and version.stdout.strip() == f"adp {report['version']}"


@pytest.mark.kafka
def test_the_installed_wheel_runs_the_pipeline(fresh_env: Path, kafka, llm_stub, tmp_path: Path):
    out = tmp_path / "trajectories"
    env = {
        **_clean_env(),
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_HOME": str(tmp_path / "home"),
        "ADP_METRICS_PORT": "0",
    }
    ids = [f"wheel-{i}" for i in range(3)]
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {
                "task_id": t,
                "task_type": "code",
                "description": f"Print {i} times 7.",
                "max_steps": 3,
                "timeout": 60,
            }
            for i, t in enumerate(ids)
        ],
    )
    adp = [str(fresh_env / "adp")]
    aggregator = AdpProcess(
        ["aggregate", "--out", str(out)], tmp_path / "agg.log", env, command=adp, cwd=tmp_path
    ).start()
    runtime = AdpProcess(
        ["runtime", "code"], tmp_path / "rt.log", env, command=adp, cwd=tmp_path
    ).start()
    try:
        produced = subprocess.run(
            [*adp, "produce", "--quiet", str(tasks)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr

        def alive():
            aggregator.assert_alive()
            runtime.assert_alive()

        wait_for(
            lambda: out.exists() and len(list(out.glob("wheel-*.json"))) == len(ids),
            180,
            "3 trajectory files from the installed wheel",
            check=alive,
        )
    finally:
        runtime.stop()
        aggregator.stop()
    files = trajectory_files(out)
    assert sorted(files) == ids
    for t in files.values():
        assert [s["action_type"] for s in t["steps"]] == ["code_execution", "final_answer"]
        assert t["steps"][0]["success"] is True


def _clean_env() -> dict[str, str]:
    """The user's environment without anything that points back at this checkout."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }


_PROBE = r"""
import json, importlib, importlib.metadata as md, importlib.resources as res
from packaging.requirements import Requirement
mods = ["adp", "adp.app.cli", "adp.schemas.codec", "adp.streams.runtime.worker",
        "adp.runtimes.code",
        "adp.connectors.sinks.file", "adp.core.settings"]
files = [importlib.import_module(m).__file__ for m in mods]
unmet = []
for text in md.requires("agent-data-platform") or []:
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            unmet.append(f"{req} (found {md.version(req.name)})")
    except md.PackageNotFoundError:
        unmet.append(f"{req} (missing)")
from adp.schemas import codec
print(json.dumps({
    "files": files, "unmet": unmet, "version": md.version("agent-data-platform"),
    "schemas": len([p for p in res.files("adp.schemas").iterdir() if p.name.endswith(".avsc")]),
    "fingerprint": codec.schema_fingerprint("adp.Task").hex(),
    "released": codec.released_versions(),
    "site": res.files("adp.app.site").joinpath("index.html").is_file(),
}))
"""
