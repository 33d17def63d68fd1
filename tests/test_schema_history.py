"""The rules for changing a schema (docs/architecture.md, "Changing a schema"), checked without
a broker.

- Each released version in schemas/history/v<N>/ stays byte-for-byte what it was: its
  fingerprints are pinned here (add a line per new version; never edit one).
- The current schemas/*.avsc are the latest released version: a change to a schema adds the
  next version folder in the same commit, so every version that reached main is kept.
- Every released version resolves to the current one: no field removed, renamed or retyped,
  enum symbols only added, and every field added since carries a default. The negative tests
  change a copy and show the checker notices, so the check cannot rot into a no-op.
- The fingerprints follow the spec's Parsing Canonical Form (a named type defined once, at
  first use); version 1's records carry the fingerprint of fastavro's expanded form and still
  decode (tests/data/schema_v1_records.json holds bytes the v1 codec wrote).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import expand_schema, to_parsing_canonical_form

from adp.schemas import codec

HERE = Path(__file__).resolve().parent
# version -> schema -> (spec fingerprint, fingerprint that version's codec wrote)
RELEASED = {
    "v1": {
        "adp.Task": ("a5499122a4bf3075", "a5499122a4bf3075"),
        "adp.StepEvent": ("a58cb58210dc7b97", "5ac9978aab952852"),
        "adp.Trajectory": ("f22bf713a00ca869", "f22bf713a00ca869"),
    },
    # verification, samples, costs (issue 14)
    "v2": {
        "adp.Task": ("dbeccaf42c357803", "dbeccaf42c357803"),
        "adp.StepEvent": ("3c95cec52ffd2e47", "3c95cec52ffd2e47"),
        "adp.Trajectory": ("04f52706ab419183", "04f52706ab419183"),
    },
    # v3: Step.artifacts (files a step's tool wrote; issue 9)
    "v3": {
        "adp.Task": ("dbeccaf42c357803", "dbeccaf42c357803"),
        "adp.StepEvent": ("b00cef3935fdf3fb", "b00cef3935fdf3fb"),
        "adp.Trajectory": ("56487321faa0e480", "56487321faa0e480"),
    },
    # v4: token ids and logprobs, requests stored as what they add (prefix_step), the policy
    # version, the models a trajectory used
    "v4": {
        "adp.Task": ("4efb6e1afc25bfd8", "4efb6e1afc25bfd8"),
        "adp.StepEvent": ("748552decfe290f0", "748552decfe290f0"),
        "adp.Trajectory": ("8a25c5e9ad493ac9", "8a25c5e9ad493ac9"),
    },
}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def raw_version(folder: Path) -> dict[str, Any]:
    return {
        name: json.loads((folder / file).read_text()) for name, file in codec.SCHEMA_FILES.items()
    }


def all_named(schemas: dict[str, Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for raw in schemas.values():
        codec.named_types(raw, into=named)
    return named


# --- the compatibility checker -------------------------------------------------------------------


class Compat:
    """Collects every way `new` would not read what `old` wrote under the project's rules."""

    def __init__(self, old_named: dict[str, Any], new_named: dict[str, Any]):
        self.old_named, self.new_named = old_named, new_named
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def resolve(self, schema: Any, named: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return named[schema if "." in schema else f"adp.{schema}"]
        if isinstance(schema, dict) and not isinstance(schema["type"], str):
            return self.resolve(schema["type"], named)
        if (
            isinstance(schema, dict)
            and schema["type"] in PRIMITIVES
            and "logicalType" not in schema
        ):
            return schema["type"]
        return schema

    def kind(self, schema: Any) -> str:
        if isinstance(schema, str):
            return schema
        if isinstance(schema, list):
            return "union"
        if schema["type"] in ("record", "enum", "fixed"):
            return f"{schema['type']} {schema['name']}"
        if schema.get("logicalType"):
            return f"{schema['type']}/{schema['logicalType']}"
        return schema["type"]

    def check(self, old: Any, new: Any, where: str) -> None:
        old, new = self.resolve(old, self.old_named), self.resolve(new, self.new_named)
        if isinstance(old, list) or isinstance(new, list):
            if not (isinstance(old, list) and isinstance(new, list)):
                self.problems.append(f"{where}: retyped from {self.kind(old)} to {self.kind(new)}")
                return
            for branch in old:
                b = self.resolve(branch, self.old_named)
                match = [
                    n for n in new if self.kind(self.resolve(n, self.new_named)) == self.kind(b)
                ]
                if not match:
                    self.problems.append(f"{where}: union lost its {self.kind(b)} branch")
                else:
                    self.check(branch, match[0], where)
            return
        if self.kind(old) != self.kind(new):
            self.problems.append(f"{where}: retyped from {self.kind(old)} to {self.kind(new)}")
            return
        if isinstance(old, str):
            return
        if old["type"] == "record":
            if where in self.seen:
                return
            self.seen.add(where)
            new_fields = {f["name"]: f for f in new["fields"]}
            for f in old["fields"]:
                if f["name"] not in new_fields:
                    self.problems.append(f"{where}.{f['name']}: removed or renamed")
                else:
                    self.check(f["type"], new_fields[f["name"]]["type"], f"{where}.{f['name']}")
            old_names = {f["name"] for f in old["fields"]}
            for f in new["fields"]:
                if f["name"] not in old_names and "default" not in f:
                    self.problems.append(f"{where}.{f['name']}: added without a default")
        elif old["type"] == "enum":
            if new["symbols"][: len(old["symbols"])] != old["symbols"]:
                self.problems.append(
                    f"{where}: enum symbols {old['symbols']} changed to "
                    f"{new['symbols']} (only append)"
                )
        elif old["type"] == "array":
            self.check(old["items"], new["items"], f"{where}[]")
        elif old["type"] == "map":
            self.check(old["values"], new["values"], f"{where}{{}}")


def compat_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    checker = Compat(all_named(old), all_named(new))
    for name in codec.SCHEMA_FILES:
        checker.check(old[name], new[name], name)
    return checker.problems


CURRENT = raw_version(codec.SCHEMA_DIR)


# --- the history ---------------------------------------------------------------------------------


def test_every_released_version_is_pinned():
    assert codec.released_versions() == list(RELEASED)


@pytest.mark.parametrize("version", list(RELEASED))
def test_released_versions_never_change(version):
    folder = codec.HISTORY_DIR / version
    schemas = codec.load_version(folder, version)
    for name, (spec, written) in RELEASED[version].items():
        assert codec.crc64_fingerprint(schemas[name].canonical).hex() == spec, name
        wrote = (
            codec.legacy_fingerprint(folder, name)
            if version in codec.LEGACY_VERSIONS
            else codec.crc64_fingerprint(schemas[name].canonical)
        )
        assert wrote.hex() == written, name


def test_current_schemas_are_the_latest_released_version():
    latest = codec.released_versions()[-1]
    released = codec.load_version(codec.HISTORY_DIR / latest, latest)
    current = codec.load_version(codec.SCHEMA_DIR, "current")
    changed = [n for n in codec.SCHEMA_FILES if released[n].canonical != current[n].canonical]
    assert not changed, (
        f"{changed} changed since {latest}: copy schemas/*.avsc to "
        f"schemas/history/v{int(latest[1:]) + 1}/ and pin it in RELEASED"
    )


@pytest.mark.parametrize("version", list(RELEASED))
def test_every_released_version_resolves_to_the_current_one(version):
    assert compat_problems(raw_version(codec.HISTORY_DIR / version), CURRENT) == []


def test_the_package_ships_the_history():
    import tomllib

    pyproject = tomllib.loads((HERE.parent / "pyproject.toml").read_text())
    assert "history/**/*.avsc" in pyproject["tool"]["setuptools"]["package-data"]["adp.schemas"]


# --- the checker catches what the rules forbid ---------------------------------------------------


def _step_fields(schemas: dict[str, Any]) -> list[dict]:
    step_field = next(f for f in schemas["adp.StepEvent"]["fields"] if f["name"] == "step")
    return step_field["type"][1]["fields"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda s: _step_fields(s).append({"name": "labels", "type": "string"}),
            "adp.StepEvent.step.labels: added without a default",
        ),
        (
            lambda s: _step_fields(s).__setitem__(3, {**_step_fields(s)[3], "name": "obs"}),
            "adp.StepEvent.step.observation: removed or renamed",
        ),
        (
            lambda s: _step_fields(s).__setitem__(0, {"name": "step_id", "type": "string"}),
            "adp.StepEvent.step.step_id: retyped from int to string",
        ),
        (
            lambda s: s["adp.Task"]["fields"][1]["type"]["symbols"].reverse(),
            "adp.Task.task_type: enum symbols",
        ),
        (
            lambda s: s["adp.Task"]["fields"][7].update(type="string"),
            "adp.Task.constraints: retyped from string/json to string",
        ),
        (
            lambda s: s["adp.Trajectory"]["fields"].remove(
                next(f for f in s["adp.Trajectory"]["fields"] if f["name"] == "success")
            ),
            "adp.Trajectory.success: removed or renamed",
        ),
        (
            lambda s: _step_fields(s).__setitem__(
                4, {"name": "thinking", "type": "string", "default": ""}
            ),
            "adp.StepEvent.step.thinking: retyped from union to string",
        ),
    ],
)
def test_checker_catches_a_forbidden_change(change, expected):
    new = copy.deepcopy(CURRENT)
    change(new)
    problems = compat_problems(CURRENT, new)
    assert any(p.startswith(expected) for p in problems), problems


def test_checker_allows_a_field_added_with_a_default():
    new = copy.deepcopy(CURRENT)
    _step_fields(new).append(
        {"name": "labels", "type": {"type": "array", "items": "string"}, "default": []}
    )
    new["adp.Task"]["fields"][1]["type"]["symbols"].append("browser")
    assert compat_problems(CURRENT, new) == []


# --- Parsing Canonical Form ----------------------------------------------------------------------


def test_canonical_form_defines_a_named_type_once():
    canonical = codec._registry().current["adp.StepEvent"].canonical
    assert canonical.count('"name":"adp.TaskType"') == 1
    assert '{"name":"task_type","type":"adp.TaskType"}' in canonical  # inside Task: a reference


def test_canonical_form_agrees_with_fastavro_where_nothing_repeats():
    # Task defines each named type once even when fully expanded; StepEvent (TaskType) and
    # Trajectory (LlmExchange, in Step and in Verdict) use one twice
    named: dict[str, Any] = {}
    expanded = {
        name: to_parsing_canonical_form(
            expand_schema(fastavro.parse_schema(CURRENT[name], named_schemas=named))
        )
        for name in codec.SCHEMA_FILES
    }
    assert codec._registry().current["adp.Task"].canonical == expanded["adp.Task"]
    for name in ("adp.StepEvent", "adp.Trajectory"):
        assert codec._registry().current[name].canonical != expanded[name]


def test_canonical_form_follows_the_spec_transformations():
    schema = {
        "type": "record",
        "name": "R",
        "namespace": "x.y",
        "doc": "stripped",
        "aliases": ["Q"],
        "fields": [
            {"name": "a", "type": {"type": "int"}, "default": 1, "doc": "d"},
            {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["Ü", "v"]}},
            {"name": "c", "type": ["null", "E"]},
            {
                "name": "d",
                "type": {"type": "map", "values": {"type": "fixed", "name": "F", "size": 16}},
            },
            {"name": "e", "type": {"type": "string", "logicalType": "json"}},
        ],
    }
    assert codec.canonical_form(schema) == (
        '{"name":"x.y.R","type":"record","fields":[{"name":"a","type":"int"},'
        '{"name":"b","type":{"name":"x.y.E","type":"enum","symbols":["Ü","v"]}},'
        '{"name":"c","type":["null","x.y.E"]},'
        '{"name":"d","type":{"type":"map","values":{"name":"x.y.F","type":"fixed","size":16}}},'
        '{"name":"e","type":"string"}]}'
    )


# --- v1's records --------------------------------------------------------------------------------


def test_records_the_v1_codec_wrote_still_decode():
    records = json.loads((HERE / "data" / "schema_v1_records.json").read_text())["records"]
    decoded = [codec.decode(bytes.fromhex(r["value"])) for r in records]
    assert [type(r).__name__ for r in decoded] == [
        "Task",
        "StepEvent",
        "StepEvent",
        "StepEvent",
        "StepEvent",
        "Trajectory",
    ]
    # fields added since v1 take their defaults, "json" ones decoded (not the text "null")
    assert decoded[0].verify is None and decoded[1].task.verify is None
    assert decoded[0].samples == 1 and decoded[-1].claimed_success is None
    assert decoded[-1].verification is None and decoded[-1].metadata.cost_usd is None
    # what a decoded record keeps as its JSON (render, encode) is what dumping it gives
    for record in decoded:
        assert json.dumps(record.as_json()) == json.dumps(record.model_dump(mode="json"))
    # decoded into today's models, re-encoded with today's (spec) fingerprints
    for record, raw in zip(decoded, records):
        again = codec.encode(record)
        assert again[2:10] == codec.schema_fingerprint("adp." + type(record).__name__)
        assert codec.decode(again) == record
        assert raw["key"] == record.task_id.encode().hex()
