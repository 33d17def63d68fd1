"""The console's trajectory index over real stores: a folder of thousands of files and an S3
bucket (moto's server) in both S3 sink layouts. A page is answered from the index: no file is
opened to list, filter, search or page; only new or changed files are read, and a restarted
console reads none that its cache already knows."""

from __future__ import annotations

import asyncio
import json
import os

from adp.app.console.index import TrajectoryIndex, cache_file_for
from adp.connectors.sinks.base import render
from adp.connectors.sinks.s3 import S3Sink
from adp.connectors.sinks.stored import FileStore, S3Store
from adp.schemas.contracts import Step, Trajectory, TrajectoryMetadata, Verdict

T0 = 1_790_000_000.0


def trajectory(
    i: int,
    task_type: str = "code",
    ok: bool = True,
    answer: str = "42",
    description: str | None = None,
) -> Trajectory:
    step = Step(
        step_id=1,
        action_type="code_execution",
        action_params={"code": f"print({i})"},
        observation=f"{i}\n",
        success=ok,
        timestamp=T0 + i,
        duration=0.1,
    )
    return Trajectory(
        task_id=f"t-{i:05d}",
        task_type=task_type,
        description=description or f"task number {i}",
        success=ok,
        steps=[step],
        final_result=answer,
        total_duration=1.5,
        metadata=TrajectoryMetadata(
            runtime_id="r",
            attempt_id=f"a{i}",
            started_at=T0 + i - 1,
            finished_at=T0 + i,
            llm_calls=1,
            prompt_tokens=10,
            completion_tokens=5,
            cached_llm_calls=0,
            task={},
        ),
    )


def many(n: int) -> list[Trajectory]:
    types = ["code", "web", "reasoning"]
    return [
        trajectory(
            i,
            types[i % 3],
            ok=i % 4 != 0,
            answer="the needle in the haystack" if i == 777 else f"answer {i}",
        )
        for i in range(n)
    ]


async def test_folder_index_answers_pages_without_opening_files(tmp_path):
    out = tmp_path / "trajectories"
    out.mkdir()
    items = many(1500)
    for t in items:
        (out / f"{t.task_id}.json").write_bytes(render(t))
    (out / ".t-99999.json.abc.tmp").write_text("half a file")  # the file sink's temp file
    (out / "notes.json").write_text("[1, 2]")  # not a trajectory: reported, not listed
    (out / "t-00001" / "step-1").mkdir(parents=True)  # files a step wrote: not trajectories
    (out / "t-00001" / "step-1" / "result.json").write_text('{"task_id": "not me"}')
    cache = cache_file_for(tmp_path / "home", str(out))
    index = TrajectoryIndex(FileStore(out), cache)
    await index.refresh()
    assert index.reads == 1501  # every file once, the temp file never

    page = index.page(limit=50)
    assert page["total"] == 1500 and len(page["items"]) == 50
    assert [i["task_id"] for i in page["items"][:2]] == ["t-01499", "t-01498"]  # newest first
    assert any("notes.json: not a trajectory" in p for p in page["problems"])
    second = index.page(offset=50, limit=50)["items"]
    assert second[0]["task_id"] == "t-01449"
    assert index.page(task_type="web")["total"] == 500
    assert index.page(success=False)["total"] == 375
    assert index.page(task_type="code", success=False)["total"] == 125
    found = index.page(text="NEEDLE")["items"]
    assert [i["task_id"] for i in found] == ["t-00777"]
    assert index.page(text="task number 1234")["items"][0]["task_id"] == "t-01234"
    assert index.page(verified="passed")["total"] == 0  # no verdicts in these trajectories
    assert index.page(verified="unverified")["total"] == 1500
    assert index.reads == 1501  # pages opened nothing

    doc = await index.document("t-00777")
    assert doc["final_result"] == "the needle in the haystack" and doc["steps"][0]["observation"]
    assert index.reads == 1502  # one file for one detail view

    # a rewritten file is read again, a removed one leaves the list, nothing else is opened
    changed = trajectory(5, "web", ok=False, answer="rewritten")
    path = out / "t-00005.json"
    path.write_bytes(render(changed))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    (out / "t-00006.json").unlink()
    await index.refresh()
    assert index.reads == 1503
    assert index.page(text="rewritten")["items"][0]["task_type"] == "web"
    assert index.page()["total"] == 1499 and await index.document("t-00006") is None

    # a restarted console starts from its cache: no file opened for what it knows
    await index.save_cache(force=True)
    restarted = TrajectoryIndex(FileStore(out), cache)
    await restarted.load_cache()
    assert restarted.page()["total"] == 1499  # served from the cache before any listing
    await restarted.refresh()
    assert restarted.reads == 0
    assert restarted.page(text="NEEDLE")["items"][0]["task_id"] == "t-00777"


async def test_samples_of_a_task_are_listed_apart_with_their_verdicts(tmp_path):
    """k samples of one task share its task_id: each is its own entry, keyed "<task_id>/<i>"
    beyond sample 0, with its own verdict (passed, failed, or could not run)."""
    verdicts = [
        Verdict(verifier="exact", passed=True),
        Verdict(verifier="exact", passed=False),
        Verdict(verifier="python_tests", passed=None, error="sandbox error"),
    ]
    for i, v in enumerate(verdicts):
        t = trajectory(i).model_copy(
            update={"task_id": "k3", "sample_index": i, "verification": v, "claimed_success": True}
        )
        folder = tmp_path / ("k3" if i else "")
        folder.mkdir(exist_ok=True)
        (folder / (f"{i}.json" if i else "k3.json")).write_bytes(render(t))
    index = TrajectoryIndex(FileStore(tmp_path))
    await index.refresh()
    page = index.page()
    assert sorted(i["key"] for i in page["items"]) == ["k3", "k3/1", "k3/2"]
    assert {i["key"]: i["verdict"] for i in page["items"]} == {
        "k3": "passed",
        "k3/1": "failed",
        "k3/2": "error",
    }
    assert [i["key"] for i in index.page(verified="failed")["items"]] == ["k3/1"]
    assert (await index.document("k3/2"))["verification"]["error"] == "sandbox error"
    assert (await index.document("k3"))["sample_index"] == 0


async def test_s3_index_reads_both_sink_layouts(moto, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    items = many(18)
    async with S3Sink("s3://console/per-task", endpoint_url=moto, create_bucket=True) as sink:
        for t in items[:12]:
            await sink.write(t)
    async with S3Sink(
        "s3://console/hourly", layout="jsonl-hourly", endpoint_url=moto, create_bucket=True
    ) as sink:
        for t in items[12:]:
            await sink.write(t)
        # a redelivery in a later batch: the same task in a second part, finished later
        await sink.flush()
        await sink.write(
            trajectory(15, "web", answer="redelivered").model_copy(
                update={"metadata": items[15].metadata.model_copy(update={"finished_at": T0 + 999})}
            )
        )

    per_task = S3Store("s3://console/per-task", endpoint_url=moto)
    hourly = S3Store("s3://console/hourly", endpoint_url=moto)
    try:
        index = TrajectoryIndex(per_task)
        await index.refresh()
        assert index.page()["total"] == 12 and index.reads == 12
        assert index.page(text="number 7")["items"][0]["task_id"] == "t-00007"
        doc = await index.document("t-00007")
        assert json.loads(render(items[7])) == doc

        parts = TrajectoryIndex(hourly)
        await parts.refresh()
        page = parts.page()
        assert page["total"] == 6 and parts.reads == 2  # two jsonl parts, six trajectories
        assert page["items"][0]["task_id"] == "t-00015"  # its latest delivery is the newest
        assert (await parts.document("t-00015"))["final_result"] == "redelivered"
        assert (await parts.document("t-00013"))["final_result"] == "answer 13"
        await parts.refresh()
        assert parts.reads == 4  # unchanged parts (same ETag) are not read again
    finally:
        await asyncio.gather(per_task.close(), hourly.close())


async def test_lineage_links_parents_and_children_without_opening_files(tmp_path):
    seed = trajectory(1, description="a hand-written task")
    child = trajectory(2, description="synthesized from it")
    child.metadata.task = {
        "metadata": {
            "lineage": {"method": "depth", "generation": 1, "parents": [{"task_id": "t-00001"}]}
        }
    }
    for t in (seed, child.model_copy()):
        (tmp_path / f"{t.task_id}.json").write_bytes(render(t))
    index = TrajectoryIndex(FileStore(str(tmp_path)))
    await index.refresh()
    reads = index.reads
    assert index.lineage("t-00002") == {
        "task_id": "t-00002",
        "generation": 1,
        "method": "depth",
        "parents": [
            {"task_id": "t-00001", "key": "t-00001", "generation": 0, "method": None, "passed": 1,
             "samples": 1}
        ],
        "children": [],
    }  # fmt: skip
    assert [c["task_id"] for c in index.lineage("t-00001")["children"]] == ["t-00002"]
    assert index.lineage("t-99999") is None
    assert index.reads == reads  # answered from the index
