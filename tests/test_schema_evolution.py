"""Schema evolution on the real broker.

- Records written by platform version 1 (tests/data/schema_v1_records.json: the exact bytes the
  v1 codec put on the wire, StepEvents with its non-standard fingerprint) are produced onto
  adp.tasks.code, adp.steps and adp.trajectories; `adp replay` rebuilds the trajectory from the
  old steps and re-sinks the old trajectory record with today's code.
- Apache Avro's Java library (a second implementation, from Maven Central) reads the topics:
  every record today's code writes decodes with BinaryMessageDecoder to the same values Python
  reads, and v1 Task/Trajectory records resolve through the history schemas; only v1's
  StepEvents, whose fingerprint is not the spec's, are refused ("Cannot resolve schema").
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adp.core.settings import settings
from adp.schemas import codec
from adp.schemas.contracts import StepEvent, Trajectory
from adp.streams.aggregator.assembly import assemble
from adp.streams.kafka import clients
from adp.streams.kafka.broker.server import resolve_jars
from adp.streams.kafka.reader import read_topic
from tests.helpers import ADP
from tests.test_codec import EVENTS, TASK, TRAJECTORY

pytestmark = pytest.mark.kafka

HERE = Path(__file__).resolve().parent
V1_RECORDS = json.loads((HERE / "data" / "schema_v1_records.json").read_text())["records"]
JAVA_DIR = HERE / "java"


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = await clients.start(clients.producer(bootstrap))
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def old_and_new_records(kafka) -> dict[str, list[bytes]]:
    """v1's bytes and records written by today's codec, on the topics they belong to."""
    new_steps = [e.model_copy(update={"task_id": "now-1"}) for e in EVENTS.values()]
    new_steps[0] = new_steps[0].model_copy(
        update={"task": TASK.model_copy(update={"task_id": "now-1", "sample_index": 0})}
    )
    new = [
        ("adp.tasks.web", b"t-1", codec.encode(TASK)),
        *[("adp.steps", b"now-1", codec.encode(e)) for e in new_steps],
        ("adp.trajectories", b"t-1", codec.encode(TRAJECTORY)),
    ]
    old = [(r["topic"], bytes.fromhex(r["key"]), bytes.fromhex(r["value"])) for r in V1_RECORDS]
    asyncio.run(_produce(kafka.bootstrap, old + new))
    return {"old": [v for _, _, v in old], "new": [v for _, _, v in new]}


def test_v1_records_decode_to_todays_models(old_and_new_records):
    kinds = [type(codec.decode(v)).__name__ for v in old_and_new_records["old"]]
    assert kinds == ["Task", "StepEvent", "StepEvent", "StepEvent", "StepEvent", "Trajectory"]
    # v1's StepEvents carry the fingerprint of fastavro's expanded form, not today's
    v1_step = old_and_new_records["old"][1]
    assert v1_step[2:10] != codec.schema_fingerprint("adp.StepEvent")
    assert codec.writer_schema(v1_step[2:10]).version == "v1"


V1_TASK_KEYS = ("max_steps", "timeout", "priority", "expected_tools", "constraints", "metadata")


def v1_view(t: Trajectory) -> dict:
    """A trajectory as schema v1 could hold it (the fields added since v1 left out: v2's
    verification, samples and costs, v4's policy version, models and token data)."""
    doc = t.model_dump(mode="json")
    for key in ("sample_index", "claimed_success", "verification", "policy_version"):
        doc.pop(key)
    for key in ("cost_usd", "models"):
        doc["metadata"].pop(key)
    doc["metadata"]["task"] = {k: doc["metadata"]["task"][k] for k in V1_TASK_KEYS}
    for step in doc["steps"]:
        if step["llm"]:
            for key in (
                "cost_usd",
                "prefix_step",
                "prefix_messages",
                "prompt_token_ids",
                "completion_token_ids",
                "completion_logprobs",
                "model_revision",
            ):
                step["llm"].pop(key)
    return doc


def test_v1_steps_replay_with_todays_code(kafka, old_and_new_records, tmp_path):
    out = tmp_path / "replayed"
    proc = subprocess.run(
        [*ADP, "replay", "--out", str(out), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    files = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(files) == {"v1-阶乘", "now-1"}
    # the same trajectory the v1 aggregator published, now read through today's schema: what
    # v1 had is identical, and the fields added since say "before verification existed"
    v1_trajectory = codec.decode(old_and_new_records["old"][-1], expect=Trajectory)
    v1_events = [codec.decode(v, expect=StepEvent) for v in old_and_new_records["old"][1:5]]
    assert [v1_view(t) for t in assemble(v1_events)[0]] == [v1_view(v1_trajectory)]
    replayed = Trajectory.model_validate(files["v1-阶乘"])
    assert v1_view(replayed) == v1_view(v1_trajectory)
    assert replayed.steps[0].observation == "120\n" and replayed.final_result == "5! = 120"
    assert replayed.verdict_status == "unverified" and replayed.claimed is True
    assert replayed.key == "v1-阶乘" and replayed.metadata.cost_usd is None


def test_v1_trajectory_records_resink_with_todays_code(kafka, old_and_new_records, tmp_path):
    out = tmp_path / "resunk"
    proc = subprocess.run(
        [*ADP, "replay", "--source", "trajectories", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    back = Trajectory.model_validate_json((out / "v1-阶乘.json").read_text())
    assert back == codec.decode(old_and_new_records["old"][-1])
    # and it exports: the conversation rebuilt from v1's raw exchanges
    data = tmp_path / "data"
    proc = subprocess.run(
        [*ADP, "export", str(out), "--format", "chat", "--out", str(data), "--validation", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {
        json.loads(line)["messages"][1]["content"]: json.loads(line)
        for line in (data / "train.jsonl").read_text().splitlines()
    }
    messages = rows["计算5的阶乘"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[3] == {"role": "tool", "content": "120\n", "tool_call_id": "call_1"}
    assert messages[-1] == {"role": "assistant", "content": "5! = 120"}


# ---- a second Avro implementation --------------------------------------------------------------


@pytest.fixture(scope="module")
def java_classpath() -> str:
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.fail("Java 17+ and Maven are needed (make test installs them)")
    pom = JAVA_DIR / "pom.xml"
    libs = resolve_jars(
        pom, settings().cache_dir / "avro-java-reader" / "libs", "Apache Avro (Java)"
    )
    return f"{libs}/*"


def _json_fields(schema: Any, value: Any) -> Any:
    """Java prints the "json" logical type as the string it is on the wire: parse it."""
    if isinstance(schema, list):
        branch = next((b for b in schema if b != "null"), None)
        return None if value is None else _json_fields(branch, value)
    if isinstance(schema, dict):
        if schema.get("logicalType") == "json":
            return json.loads(value)
        if schema.get("type") == "record":
            return {f["name"]: _json_fields(f["type"], value[f["name"]]) for f in schema["fields"]}
        if schema.get("type") == "array":
            return [_json_fields(schema["items"], v) for v in value]
    if isinstance(schema, str) and schema in NAMED:
        return _json_fields(NAMED[schema], value)
    return value


NAMED: dict[str, Any] = {}
for _file in codec.SCHEMA_FILES.values():
    codec.named_types(json.loads((codec.SCHEMA_DIR / _file).read_text()), into=NAMED)


def test_apache_avro_java_reads_the_topics(kafka, old_and_new_records, java_classpath):
    topics = ["adp.tasks.web", "adp.tasks.code", "adp.steps", "adp.trajectories"]
    proc = subprocess.run(
        [
            "java",
            "-cp",
            java_classpath,
            str(JAVA_DIR / "AvroTopicReader.java"),
            kafka.bootstrap,
            str(codec.SCHEMA_DIR),
            *topics,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Java's own Parsing Canonical Form fingerprints are the ones this codec writes
    for name in codec.SCHEMA_FILES:
        assert f"{name} fingerprint {codec.schema_fingerprint(name).hex()}" in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_value: dict[bytes, dict] = {}
    old = set(old_and_new_records["old"])
    # records whose fingerprint is not the spec's fingerprint of their writer schema
    legacy = {
        v for v in old if v[2:10] != codec.crc64_fingerprint(codec.writer_schema(v[2:10]).canonical)
    }
    assert len(lines) == len(old_and_new_records["old"]) + len(old_and_new_records["new"])
    values = _topic_values(kafka.bootstrap, topics)
    for line in lines:
        by_value[values[(line["topic"], line["partition"], line["offset"])]] = line
    for value, line in by_value.items():
        if value in legacy:
            assert "Cannot resolve schema for fingerprint" in line["error"], line
            continue
        assert "record" in line, line
        record = codec.decode(value)
        name = "adp." + type(record).__name__
        raw = json.loads((codec.SCHEMA_DIR / codec.SCHEMA_FILES[name]).read_text())
        assert _json_fields(raw, line["record"]) == record.model_dump(mode="json"), line
    assert len(legacy) == 4 and sum("record" in line for line in lines) == len(lines) - 4


def _topic_values(bootstrap: str, topics: list[str]) -> dict[tuple[str, int, int], bytes]:
    async def read() -> dict[tuple[str, int, int], bytes]:
        return {
            (r.topic, r.partition, r.offset): r.value
            for topic in topics
            for r in await read_topic(bootstrap, topic)
        }

    return asyncio.run(read())
