"""Avro's Parsing Canonical Form of a schema and its CRC-64-AVRO fingerprint (Avro spec,
"Transforming into Parsing Canonical Form"), which name a record's writer schema in the
single-object header (codec.py).

A named type is defined once, at its first use, and referred to by name afterwards, as Apache
Avro's Java library computes it; define_once=False gives fastavro's expanded form, which
version 1 of the platform fingerprinted (codec.LEGACY_VERSIONS).
"""

from __future__ import annotations

import json
from typing import Any

from fastavro.schema import fingerprint

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "enum", "fixed", "error"}
_KEEP = ("name", "type", "fields", "symbols", "items", "values", "size")  # [STRIP] + [ORDER]


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical_form(
    schema: Any, named: dict[str, Any] | None = None, define_once: bool = True
) -> str:
    """The schema's Parsing Canonical Form as the spec defines it.

    `named`: full name -> raw definition of named types defined in earlier files (a reference
    to one is replaced by its definition at first use). define_once=False writes every
    reference as a full definition: the form fastavro's expand_schema gives, which platform
    version 1 fingerprinted (LEGACY_VERSIONS)."""
    form = _CanonicalForm(dict(named or {}), define_once).walk(schema, None)
    return json.dumps(form, ensure_ascii=False, separators=(",", ":"))


class _CanonicalForm:
    """The walk behind canonical_form: the named types known so far (raw definitions) and those
    already written out once."""

    def __init__(self, known: dict[str, Any], define_once: bool) -> None:
        self.known = known
        self.define_once = define_once
        self.defined: set[str] = set()

    def walk(self, node: Any, ns: str | None) -> Any:
        if isinstance(node, str):
            return self._reference(node, ns)
        if isinstance(node, list):
            return [self.walk(branch, ns) for branch in node]
        kind = node["type"]
        if isinstance(kind, (dict, list)) or kind not in _NAMED | {"array", "map"}:
            return self.walk(kind, ns)  # {"type": "int", ...}, {"type": {...}}, logical types
        out: dict[str, Any] = {}
        if kind in _NAMED:
            full = _fullname(node["name"], node.get("namespace", ns))
            if full in self.defined and self.define_once:  # an inline definition met again
                return full
            ns = full.rsplit(".", 1)[0] if "." in full else None
            self.known.setdefault(full, node)
            self.defined.add(full)
            out["name"] = full
        out["type"] = kind
        out.update(self._body(kind, node, ns))
        return {k: out[k] for k in _KEEP if k in out}

    def _reference(self, name: str, ns: str | None) -> Any:
        """A primitive, or a named type: its full name once defined, else its definition."""
        if name in _PRIMITIVES:
            return name
        full = _fullname(name, ns)
        if full in self.defined and self.define_once:
            return full
        if full not in self.known:
            raise ValueError(f"unknown named type {full!r}")
        return self.walk(self.known[full], full.rsplit(".", 1)[0] if "." in full else None)

    def _body(self, kind: str, node: dict[str, Any], ns: str | None) -> dict[str, Any]:
        """What the canonical form keeps of a complex type besides its name and type."""
        if kind in ("record", "error"):
            fields = [{"name": f["name"], "type": self.walk(f["type"], ns)} for f in node["fields"]]
            return {"fields": fields}
        if kind == "enum":
            return {"symbols": list(node["symbols"])}
        if kind == "array":
            return {"items": self.walk(node["items"], ns)}
        if kind == "map":
            return {"values": self.walk(node["values"], ns)}
        if kind == "fixed":
            return {"size": int(node["size"])}
        return {}


def named_types(
    schema: Any, namespace: str | None = None, into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every named type a raw schema defines: full name -> definition."""
    into = {} if into is None else into
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, namespace, into)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            full = _fullname(schema["name"], schema.get("namespace", namespace))
            into.setdefault(full, schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else None
            for f in schema.get("fields", ()):
                named_types(f["type"], namespace, into)
        elif kind in ("array", "map"):
            named_types(schema.get("items", schema.get("values")), namespace, into)
        elif isinstance(kind, (dict, list)):
            named_types(kind, namespace, into)
    return into


def crc64_fingerprint(canonical: str) -> bytes:
    """CRC-64-AVRO of a canonical form, in the byte order of the single-object header."""
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
