"""Avro single-object encoding of the platform's records (fastavro).

Wire format (Avro spec, "Single object encoding"): 0xC3 0x01, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary
body. A reader looks the fingerprint up among the schemas it knows and refuses anything else
with DecodeError, so bytes from another producer are never decoded as garbage.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import fastavro
import fastavro.read
import fastavro.write
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form
from pydantic import BaseModel, ValidationError

from adp.schemas import contracts

# The .avsc files ship inside the package beside this module (package data of adp.schemas).
SCHEMA_DIR = Path(__file__).resolve().parent
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

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """Bytes that are not a record this platform knows; the message says why."""


# The "json" logical type: a JSON value carried as Avro string. fastavro looks logical types
# up as "<base type>-<logicalType>".
def _json_dumps(value: Any, *_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_loads(text: str, *_: Any) -> Any:
    return json.loads(text)


fastavro.write.LOGICAL_WRITERS["string-json"] = _json_dumps
fastavro.read.LOGICAL_READERS["string-json"] = _json_loads


@lru_cache(maxsize=1)
def _registry() -> tuple[dict[str, Any], dict[bytes, str]]:
    """Parse every schema once: name -> parsed schema, fingerprint -> name."""
    named: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    by_fingerprint: dict[bytes, str] = {}
    for name, file in SCHEMA_FILES.items():
        raw = json.loads((SCHEMA_DIR / file).read_text())
        parsed[name] = fastavro.parse_schema(raw, named_schemas=named)
        canonical = to_parsing_canonical_form(expand_schema(parsed[name]))
        by_fingerprint[bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))] = name
    return parsed, by_fingerprint


def schema_fingerprint(name: str) -> bytes:
    _, by_fingerprint = _registry()
    return next(fp for fp, n in by_fingerprint.items() if n == name)


def encode(record: BaseModel) -> bytes:
    """A pydantic contract record -> single-object-encoded Avro bytes."""
    name = "adp." + type(record).__name__
    parsed, _ = _registry()
    if name not in parsed:
        raise TypeError(f"{type(record).__name__} is not a top-level contract record")
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(schema_fingerprint(name))
    fastavro.schemaless_writer(buf, parsed[name], record.model_dump(mode="json"))
    return buf.getvalue()


def decode(data: bytes, expect: type[M] | None = None) -> BaseModel:
    """Single-object-encoded bytes -> the contract record they name.

    Raises DecodeError for bytes without the Avro header, an unknown fingerprint, a record of
    another type than `expect`, or a body that does not parse."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise DecodeError(
            f"not Avro single-object encoded (header {data[:2].hex() or 'empty'}, want c301)"
        )
    parsed, by_fingerprint = _registry()
    name = by_fingerprint.get(data[2:HEADER_LEN])
    if name is None:
        raise DecodeError(f"unknown schema fingerprint {data[2:HEADER_LEN].hex()}")
    model = MODELS[name]
    if expect is not None and model is not expect:
        raise DecodeError(f"got a {name} record, expected adp.{expect.__name__}")
    body = io.BytesIO(data[HEADER_LEN:])
    try:
        obj = fastavro.schemaless_reader(body, parsed[name], parsed[name])
    except Exception as exc:  # fastavro raises many types on truncated or corrupt input
        raise DecodeError(f"corrupt {name} body: {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(data) - HEADER_LEN:
        raise DecodeError(f"{len(data) - HEADER_LEN - body.tell()} trailing bytes after {name}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:  # Avro-valid, but not a record this platform would write
        raise DecodeError(f"invalid {name}: {exc.error_count()} field error(s): "
                          + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                      for e in exc.errors(include_url=False)[:5])) from exc
