"""`adp verify` on stored trajectories (a folder, and S3 on moto's real server), as a real process:
new verdicts from a changed spec, from a tasks file, or from the recorded spec; the steps and
everything but the verdict stay byte for byte; a verifier plugin installed with pip is found
through the adp.verifiers entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from adp.connectors.sinks.base import render
from adp.connectors.sinks.file import write_atomic
from adp.schemas.contracts import Trajectory
from adp.streams.aggregator.assembly import assemble
from tests.helpers import ADP, write_tasks
from tests.test_assembly import attempt_events, sample_events
from tests.test_replay import AWS  # credentials that only moto accepts

ROOT = Path(__file__).resolve().parent.parent


def stored(folder: Path) -> dict[str, Trajectory]:
    """Three trajectories as the file sink writes them: answers 120, 121, and a sample."""
    events = attempt_events("right") + attempt_events("wrong") + sample_events("s", 1, 2)
    trajectories, _ = assemble(events)
    out = {}
    for t in trajectories:
        answer = {"right": "5! = 120", "wrong": "5! = 121"}.get(t.task_id, "120")
        t = t.model_copy(update={"final_result": answer})
        write_atomic(folder / f"{t.key}.json", render(t))
        out[t.key] = t
    return out


def adp(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ADP, *args], capture_output=True, text=True, timeout=120, env=env)


def without_verdict(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("verification", "success", "claimed_success")}


def test_a_new_spec_changes_verdicts_and_nothing_else(tmp_path):
    before = stored(tmp_path)
    raw_before = {
        p.relative_to(tmp_path): json.loads(p.read_text()) for p in tmp_path.rglob("*.json")
    }
    done = adp(
        "verify",
        str(tmp_path),
        "--spec",
        '{"type": "answer", "match": "numeric", "expected": 120}',
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["before"] == {"unverified": 3} and summary["after"] == {"passed": 2, "failed": 1}
    assert summary["written"] == 3 and summary["changed"] == 3
    after = {p.relative_to(tmp_path): json.loads(p.read_text()) for p in tmp_path.rglob("*.json")}
    assert sorted(map(str, after)) == ["right.json", "s/1.json", "wrong.json"]
    for name, doc in after.items():
        assert without_verdict(doc) == without_verdict(raw_before[name])  # steps untouched
        assert doc["claimed_success"] is True
    assert after[Path("wrong.json")]["success"] is False
    assert after[Path("wrong.json")]["verification"]["details"].startswith("expected 120")
    assert after[Path("right.json")]["success"] is True
    assert before["right"].steps == Trajectory.model_validate(after[Path("right.json")]).steps

    # judged again with the spec each one was verified with: nothing changes
    again = adp("verify", str(tmp_path), "--json")
    assert json.loads(again.stdout)["changed"] == 0

    # a tasks file: only its tasks are judged, each with its own line's spec
    tasks = write_tasks(
        tmp_path.parent / "tasks.jsonl",
        [
            {
                "task_id": "wrong",
                "task_type": "code",
                "description": "5!",
                "verify": {"match": "contains", "expected": "121"},
            }
        ],
    )
    by_file = adp("verify", str(tmp_path), "--tasks", str(tasks), "--json")
    summary = json.loads(by_file.stdout)
    assert summary["after"] == {"passed": 1} and summary["left_alone"] == 2
    assert json.loads((tmp_path / "wrong.json").read_text())["success"] is True


def test_bad_specs_and_sources_are_refused_clearly(tmp_path):
    bad = adp("verify", str(tmp_path), "--spec", '{"type": "answer", "match": "fuzzy"}')
    assert bad.returncode == 2 and "verify.match: one of" in bad.stderr
    missing = adp("verify", str(tmp_path / "nope"), "--spec", '{"expected": "1"}')
    assert missing.returncode == 1 and "no such folder" in missing.stderr
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    skipped = adp("verify", str(tmp_path), "--spec", '{"expected": "1"}', "--json")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["skipped"] == 1
    assert "skipped " in skipped.stderr and "junk.json: not a trajectory" in skipped.stderr


def test_a_verifier_plugin_installed_with_pip(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "tests" / "plugins" / "wordcount"),
        ],
        check=True,
        timeout=300,
    )
    folder = tmp_path / "trajectories"
    folder.mkdir()
    stored(folder)
    env = {**os.environ, "PYTHONPATH": f"{target}:{ROOT}"}
    done = adp(
        "verify", str(folder), "--spec", '{"type": "wordcount", "max_words": 2}', "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["after"] == {"passed": 1, "failed": 2}
    verdict = json.loads((folder / "s" / "1.json").read_text())["verification"]
    assert verdict["verifier"] == "wordcount" and verdict["details"] == "1 words (at most 2)"
    refused = adp("verify", str(folder), "--spec", '{"type": "wordcount"}', env=env)
    assert refused.returncode == 2 and "verify.max_words" in refused.stderr


def test_s3_source_is_verified_in_place(moto, tmp_path):
    env = {**os.environ, **AWS, "ADP_S3_ENDPOINT_URL": moto, "ADP_S3_CREATE_BUCKET": "1"}
    folder = tmp_path / "local"
    folder.mkdir()
    stored(folder)
    put = adp(
        "verify",
        str(folder),
        "--spec",
        '{"expected": "5! = 120"}',
        "--out",
        "s3://verdicts/run1",
        "--json",
        env=env,
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["after"] == {"passed": 1, "failed": 2}
    again = adp(
        "verify",
        "s3://verdicts/run1",
        "--spec",
        '{"match": "numeric", "expected": 121}',
        "--json",
        env=env,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["read"] == 3 and summary["after"] == {"passed": 1, "failed": 2}
    assert summary["changed"] == 2
