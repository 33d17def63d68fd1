"""Avro single-object encoding of the platform's records (fastavro), with schema evolution.

Wire format (Avro spec, "Single object encoding"): 0xC3 0x01, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary
body. A reader looks the fingerprint up among the schemas it knows and refuses anything else
with DecodeError, so bytes from another producer are never decoded as garbage.

Evolution (README "Changing a schema"): schemas/*.avsc are the current schemas, the ones this
code writes and the reader schema everything is decoded into. schemas/history/v<N>/ keeps
every released version unchanged. A record's fingerprint names its writer schema (current or
any released version); the body is read with that writer schema and resolved to the current
one (Avro schema resolution: fields added since carry their defaults), so adp.steps records
written years ago still decode, replay and export.

Fingerprints follow the spec's Parsing Canonical Form, where a named type is defined once, at
its first use, and referred to by name afterwards (as Apache Avro's Java library computes it).
Version 1 of the platform computed StepEvent's fingerprint from fastavro's expanded schema,
which defines adp.TaskType twice (in StepEvent and again inside Task); records it wrote carry
that fingerprint, so for the versions in LEGACY_VERSIONS the reader also knows it. The canonical
form and the fingerprint are computed in canonical.py.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import fastavro
import fastavro.read
import fastavro.write
import orjson
from pydantic import BaseModel, ValidationError

from adp.schemas import contracts
from adp.schemas.canonical import canonical_form, crc64_fingerprint, named_types

# The .avsc files ship inside the package beside this module (package data of adp.schemas).
SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

# Order matters: later schemas refer to types named in earlier ones.
SCHEMA_FILES = {
    "adp.Task": "Task.avsc",
    "adp.StepEvent": "StepEvent.avsc",
    "adp.Trajectory": "Trajectory.avsc",
}
MODELS: dict[str, type[BaseModel]] = {
    "adp.Task": contracts.Task,
    "adp.StepEvent": contracts.StepEvent,
    "adp.Trajectory": contracts.Trajectory,
}
# Released versions whose records carry the fingerprint of fastavro's expanded form.
LEGACY_VERSIONS = ("v1",)

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """Bytes that are not a record this platform knows; the message says why."""


# The "json" logical type: a JSON value carried as Avro string. fastavro looks logical types
# up as "<base type>-<logicalType>". These run for every nested value of every record (LLM
# requests and responses, action params). Writing uses orjson (about 25 times faster than json
# here); what it refuses goes through json as before (integers beyond 64 bits, non-string keys,
# lone surrogates); it writes NaN as null, as render() does in every trajectory file. Reading
# stays with json: orjson would turn an integer beyond 64 bits into a float without a word, and
# the check that would catch it costs more than orjson saves (measured on bench/workload.py).
def _json_dumps(value: Any, *_: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_loads(text: str, *_: Any) -> Any:
    return json.loads(text)


fastavro.write.LOGICAL_WRITERS["string-json"] = _json_dumps
fastavro.read.LOGICAL_READERS["string-json"] = _json_loads


# --- the registry: writer schemas by fingerprint, the current schema as reader ----------------


@dataclass(frozen=True)
class WriterSchema:
    """One schema a record may have been written with."""

    name: str  # adp.StepEvent
    version: str  # "v1", ... or "current" for schemas/*.avsc not yet released
    canonical: str
    parsed: Any  # fastavro's parsed schema, within its own version's named types


@dataclass(frozen=True)
class Registry:
    current: dict[str, WriterSchema]  # name -> the schema this code writes and reads into
    writers: dict[bytes, WriterSchema]  # fingerprint -> writer schema
    fingerprints: dict[str, bytes]  # name -> fingerprint this code writes


def load_version(folder: Path, version: str) -> dict[str, WriterSchema]:
    """The three schemas of one folder, parsed together (later files use earlier types)."""
    parsed_named: dict[str, Any] = {}
    raw_named: dict[str, Any] = {}
    out: dict[str, WriterSchema] = {}
    for name, file in SCHEMA_FILES.items():
        raw = json.loads((folder / file).read_text())
        canonical = canonical_form(raw, raw_named)
        named_types(raw, into=raw_named)
        out[name] = WriterSchema(
            name, version, canonical, fastavro.parse_schema(raw, named_schemas=parsed_named)
        )
    return out


def released_versions(history_dir: Path = HISTORY_DIR) -> list[str]:
    """Folders of schemas/history, oldest first (v1, v2, ..., v10)."""
    if not history_dir.is_dir():
        return []
    return sorted(
        (
            p.name
            for p in history_dir.iterdir()
            if p.is_dir() and p.name[1:].isdigit() and p.name.startswith("v")
        ),
        key=lambda v: int(v[1:]),
    )


def legacy_fingerprint(folder: Path, name: str) -> bytes:
    """The fingerprint platform version 1 wrote: of the form with every reference expanded."""
    raw_named: dict[str, Any] = {}
    for other, file in SCHEMA_FILES.items():
        raw = json.loads((folder / file).read_text())
        if other == name:
            return crc64_fingerprint(canonical_form(raw, raw_named, define_once=False))
        named_types(raw, into=raw_named)
    raise KeyError(name)


def build_registry(schema_dir: Path = SCHEMA_DIR, history_dir: Path = HISTORY_DIR) -> Registry:
    """Every released version's schemas by fingerprint, and the current ones."""
    writers: dict[bytes, WriterSchema] = {}
    for version in released_versions(history_dir):
        folder = history_dir / version
        for name, schema in load_version(folder, version).items():
            writers.setdefault(crc64_fingerprint(schema.canonical), schema)
            if version in LEGACY_VERSIONS:
                writers.setdefault(legacy_fingerprint(folder, name), schema)
    current = load_version(schema_dir, "current")
    fingerprints = {}
    for name, schema in current.items():
        fp = crc64_fingerprint(schema.canonical)
        known = writers.get(fp)
        if known is None or known.canonical != schema.canonical:
            writers[fp] = schema
        fingerprints[name] = fp
    return Registry(current, writers, fingerprints)


_registry = lru_cache(maxsize=1)(build_registry)


def schema_fingerprint(name: str) -> bytes:
    """The fingerprint this code writes for `name` (e.g. "adp.Task")."""
    return _registry().fingerprints[name]


def writer_schema(fp: bytes) -> WriterSchema | None:
    return _registry().writers.get(bytes(fp))


def current_schema(name: str) -> Any:
    """fastavro's parsed current schema of `name`."""
    return _registry().current[name].parsed


def _decode_json_defaults(reader: Any, writer: Any, value: Any) -> None:
    """fastavro fills a field the writer lacked with the reader schema's default as written in
    the schema, without the field's logical type (the same gap as fastavro#814 on the write
    side): a "json" field added with default "null" would come back as the string "null".
    Decode such defaults here, in place. Our unions are all ["null", X] (test_contracts)."""
    rnamed, wnamed = reader.get("__named_schemas", {}), writer.get("__named_schemas", {})

    def named(schema: Any, table: dict[str, Any]) -> Any:
        return table.get(schema, schema) if isinstance(schema, str) else schema

    def walk(r: Any, w: Any, v: Any) -> None:
        r, w = named(r, rnamed), named(w, wnamed)
        if v is None:
            return
        if isinstance(r, list) and isinstance(w, list):
            walk(next(b for b in r if b != "null"), next(b for b in w if b != "null"), v)
        elif isinstance(r, dict) and isinstance(w, dict) and r.get("type") == "record":
            have = {f["name"]: f["type"] for f in w.get("fields", ())}
            for f in r["fields"]:
                t = f["type"]
                if f["name"] not in have:
                    if (
                        isinstance(t, dict)
                        and t.get("logicalType") == "json"
                        and isinstance(v.get(f["name"]), str)
                    ):
                        v[f["name"]] = json.loads(v[f["name"]])
                else:
                    walk(t, have[f["name"]], v.get(f["name"]))
        elif isinstance(r, dict) and isinstance(w, dict) and r.get("type") == "array":
            for item in v:
                walk(r["items"], w["items"], item)

    walk(reader, writer, value)


def encode(record: BaseModel) -> bytes:
    """A pydantic contract record -> single-object-encoded Avro bytes (current schema)."""
    name = "adp." + type(record).__name__
    registry = _registry()
    if name not in registry.current:
        raise TypeError(f"{type(record).__name__} is not a top-level contract record")
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(registry.fingerprints[name])
    fastavro.schemaless_writer(buf, registry.current[name].parsed, record.as_json())
    return buf.getvalue()


def decode(data: bytes, expect: type[M] | None = None) -> BaseModel:
    """Single-object-encoded bytes -> the contract record they name, in the current schema.

    Raises DecodeError for bytes without the Avro header, an unknown fingerprint, a record of
    another type than `expect`, or a body that does not parse."""
    return decode_record(data, expect)[0]


def decode_record(data: bytes, expect: type[M] | None = None) -> tuple[BaseModel, dict]:
    """As `decode`, and also the record as plain data: what the model's
    model_dump(mode="json") gives, without paying for it (the model was validated from it, and
    JSON fields are the same objects), for callers that keep parts of records as JSON."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise DecodeError(
            f"not Avro single-object encoded (header {data[:2].hex() or 'empty'}, want c301)"
        )
    registry = _registry()
    writer = registry.writers.get(data[2:HEADER_LEN])
    if writer is None:
        raise DecodeError(f"unknown schema fingerprint {data[2:HEADER_LEN].hex()}")
    name = writer.name
    model = MODELS[name]
    if expect is not None and model is not expect:
        raise DecodeError(f"got a {name} record, expected adp.{expect.__name__}")
    reader = registry.current[name]
    body = io.BytesIO(data[HEADER_LEN:])
    try:
        if writer.canonical == reader.canonical:  # no reader schema: nothing to resolve
            obj = fastavro.schemaless_reader(body, reader.parsed, None)
        else:  # written with an older version: Avro schema resolution to the current one
            obj = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
            _decode_json_defaults(reader.parsed, writer.parsed, obj)
    except Exception as exc:  # fastavro raises many types on truncated or corrupt input
        raise DecodeError(
            f"corrupt {name} body ({writer.version} schema): {type(exc).__name__}: {exc}"
        ) from exc
    if body.tell() != len(data) - HEADER_LEN:
        raise DecodeError(f"{len(data) - HEADER_LEN - body.tell()} trailing bytes after {name}")
    try:
        record = model.model_validate(obj)
    except ValidationError as exc:  # Avro-valid, but not a record this platform would write
        raise DecodeError(
            f"invalid {name}: {exc.error_count()} field error(s): "
            + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            )
        ) from exc
    if writer.canonical != reader.canonical:
        # resolved from an older schema: the fields added since come last in obj, where callers
        # (and as_json) are promised the model's order (the current schema's: test_contracts)
        obj = record.model_dump(mode="json")
    record.keep_json(obj)
    return record, obj
