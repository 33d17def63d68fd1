"""schemas/*.avsc and adp/contracts.py say the same thing.

The checker walks each parsed .avsc file (as JSON, resolving the named types it defines in file
order) next to the pydantic model of the same name, and compares field names in order, Avro
types with Python annotations (optional unions with null defaults, enums and their symbols,
nested records, arrays, the "json" logical type), and defaults. The negative tests change one
side of a copy and show the checker catches it, so the check itself cannot rot into a no-op.
"""

from __future__ import annotations

import copy
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any, Union

import pytest
from pydantic import BaseModel, create_model

from adp.schemas import codec, contracts

SCHEMA_DIR = Path(codec.SCHEMA_DIR)
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "long": (int,),
    "double": (float,),
    "float": (float,),
    "boolean": (bool,),
    "bytes": (bytes,),
}


def load_schemas() -> dict[str, dict]:
    """File order as the codec registers them: name -> raw JSON schema."""
    return {
        name: json.loads((SCHEMA_DIR / file).read_text())
        for name, file in codec.SCHEMA_FILES.items()
    }


def model_for(name: str) -> type[BaseModel] | type[enum.Enum] | None:
    return getattr(contracts, name.rsplit(".", 1)[-1], None)


class Checker:
    """Compares Avro schemas with Python types, collecting every mismatch as a message."""

    def __init__(self, models: dict[str, type] | None = None):
        self.named: dict[str, dict] = {}  # full name -> Avro named type (record or enum)
        self.models = models or {}
        self.problems: list[str] = []
        self.checked: set[str] = set()

    def fullname(self, schema: dict, namespace: str) -> str:
        name = schema["name"]
        return name if "." in name else f"{schema.get('namespace', namespace)}.{name}"

    def python_type(self, fullname: str) -> type | None:
        return self.models.get(fullname) or model_for(fullname)

    def check_type(self, avro: Any, ann: Any, where: str, ns: str) -> None:
        if isinstance(avro, str) and avro in PRIMITIVES:
            if (
                avro == "string"
                and isinstance(ann, type)
                and issubclass(ann, str)
                and issubclass(ann, enum.Enum)
            ):
                return  # a str enum carried as Avro string (ErrorType): symbols in the doc
            if ann not in PRIMITIVES[avro]:
                self.problems.append(f"{where}: Avro {avro} but Python {ann!r}")
            return
        if isinstance(avro, str):  # a reference to a named type defined earlier
            full = avro if "." in avro else f"{ns}.{avro}"
            if full not in self.named:
                self.problems.append(f"{where}: Avro refers to unknown type {full}")
                return
            return self.check_named(self.named[full], ann, where, ns, defined=True)
        if isinstance(avro, list):  # a union: only ["null", X] is used by the platform
            others = [b for b in avro if b != "null"]
            if "null" not in avro or len(others) != 1:
                self.problems.append(f"{where}: unsupported Avro union {avro}")
                return
            py_args = typing.get_args(ann)
            if typing.get_origin(ann) not in (Union, types.UnionType) or type(None) not in py_args:
                self.problems.append(f"{where}: Avro is nullable but Python {ann!r} is not")
                return
            rest = [a for a in py_args if a is not type(None)]
            if len(rest) != 1:
                self.problems.append(f"{where}: Python union {ann!r} has several non-null types")
                return
            return self.check_type(others[0], rest[0], where, ns)
        kind = avro["type"]
        if avro.get("logicalType") == "json":
            if kind != "string":
                self.problems.append(f"{where}: json logical type must be on string, not {kind}")
            elif not (
                ann is Any
                or (typing.get_origin(ann) is dict and typing.get_args(ann)[0] is str)
                or ann is dict
            ):
                self.problems.append(f"{where}: Avro json but Python {ann!r} (want Any or dict)")
            return
        if kind == "array":
            if typing.get_origin(ann) is not list:
                self.problems.append(f"{where}: Avro array but Python {ann!r}")
                return
            return self.check_type(avro["items"], typing.get_args(ann)[0], f"{where}[]", ns)
        if kind in ("record", "enum"):
            return self.check_named(avro, ann, where, ns, defined=False)
        if kind in PRIMITIVES:
            return self.check_type(kind, ann, where, ns)
        self.problems.append(f"{where}: unsupported Avro type {avro!r}")

    def check_named(self, avro: dict, ann: Any, where: str, ns: str, defined: bool) -> None:
        full = self.fullname(avro, ns)
        if not defined:
            if full in self.named:
                self.problems.append(f"{where}: Avro type {full} defined twice")
            self.named[full] = avro
        if avro["type"] == "enum":
            return self.check_enum(avro, ann, where, full)
        expected = self.python_type(full)
        if ann is not expected:
            self.problems.append(f"{where}: Avro record {full} but Python {ann!r}")
            return
        if full not in self.checked:  # a reference to a record checked already: same model
            self.check_record(avro, ann, full)

    def check_enum(self, avro: dict, ann: Any, where: str, full: str) -> None:
        if not (isinstance(ann, type) and issubclass(ann, enum.Enum)):
            self.problems.append(f"{where}: Avro enum {full} but Python {ann!r}")
            return
        if ann.__name__ != avro["name"]:
            self.problems.append(f"{where}: Avro enum {full} but Python enum {ann.__name__}")
        values = [m.value for m in ann]
        if values != avro["symbols"]:
            self.problems.append(
                f"{where}: enum {full} symbols {avro['symbols']} != Python {values}"
            )

    def check_record(self, avro: dict, model: type[BaseModel], full: str | None = None) -> None:
        full = full or self.fullname(avro, "")
        ns = full.rsplit(".", 1)[0]
        self.checked.add(full)
        avro_names = [f["name"] for f in avro["fields"]]
        py_names = list(model.model_fields)
        if avro_names != py_names:
            self.problems.append(f"{full}: Avro fields {avro_names} != Python fields {py_names}")
        py_fields = model.model_fields
        for f in avro["fields"]:
            where = f"{full}.{f['name']}"
            info = py_fields.get(f["name"])
            if info is None:
                continue  # already reported as a name mismatch
            self.check_type(f["type"], info.annotation, where, ns)
            self.check_default(f, info, where)

    def check_default(self, field: dict, info, where: str) -> None:
        avro_type = field["type"]
        py_required = info.is_required()
        if "default" not in field:
            # A Python default on an always-written field is harmless (the writer always
            # sends it); allowed, e.g. LlmExchange.prompt_tokens = 0.
            return
        if py_required:
            self.problems.append(
                f"{where}: Avro default {field['default']!r} but Python requires it"
            )
            return
        py_default = info.get_default(call_default_factory=True)
        avro_default = field["default"]
        if isinstance(avro_type, dict) and avro_type.get("logicalType") == "json":
            avro_default = json.loads(avro_default)
        if isinstance(py_default, enum.Enum):
            py_default = py_default.value
        if py_default != avro_default or isinstance(py_default, bool) != isinstance(
            avro_default, bool
        ):
            self.problems.append(
                f"{where}: Avro default {avro_default!r} != Python default {py_default!r}"
            )
        if isinstance(avro_type, list) and avro_default is not None:
            self.problems.append(f"{where}: nullable union must default to null")


def check_all(schemas: dict[str, dict], models: dict[str, type] | None = None) -> Checker:
    checker = Checker(models)
    for name, schema in schemas.items():
        model = checker.python_type(name)
        if model is None:
            checker.problems.append(
                f"{name}: no pydantic model of that name in adp.schemas.contracts"
            )
            continue
        checker.check_named(schema, model, name, "adp", defined=False)
    return checker


# --- the real contract ---------------------------------------------------------------------------


def test_every_model_agrees_with_its_schema():
    checker = check_all(load_schemas())
    assert checker.problems == []
    # every record/enum model in contracts.py was reached through some schema
    expected = {
        f"adp.{n}"
        for n, obj in vars(contracts).items()
        if isinstance(obj, type)
        and obj.__module__ == contracts.__name__
        and ((issubclass(obj, BaseModel) and not n.startswith("_")) or issubclass(obj, enum.Enum))
    }
    reached = checker.checked | set(checker.named)
    # ErrorType travels as a nullable string (Avro has no enum for it); its symbols are in the docs
    assert expected - reached == {"adp.ErrorType"}


def test_error_type_symbols_are_documented_in_the_schema():
    text = (SCHEMA_DIR / "StepEvent.avsc").read_text()
    doc = next(
        f["doc"]
        for f in json.loads(text)["fields"][8]["type"][1]["fields"]
        if f["name"] == "error_type"
    )
    assert [s.strip() for s in doc.split("|")] == [e.value for e in contracts.ErrorType]


def test_codec_uses_the_same_files_and_models():
    assert set(codec.MODELS) == set(load_schemas())
    for name, model in codec.MODELS.items():
        assert model is model_for(name)


# --- the checker catches drift (negative checks on modified copies) ------------------------------


def problems_after(edit_schema=None, models: dict[str, type] | None = None) -> list[str]:
    schemas = copy.deepcopy(load_schemas())
    if edit_schema:
        edit_schema(schemas)
    return check_all(schemas, models).problems


def test_field_added_to_schema_only_is_caught():
    def add(s):
        s["adp.Task"]["fields"].append({"name": "owner", "type": "string"})

    problems = problems_after(add)
    assert any("adp.Task: Avro fields" in p and "'owner'" in p for p in problems)


def test_field_added_to_model_only_is_caught():
    Task2 = create_model("Task", __base__=contracts.Task, owner=(str, ...))
    problems = problems_after(models={"adp.Task": Task2})
    assert any("adp.Task: Avro fields" in p and "'owner'" in p for p in problems)


def test_nested_record_field_added_to_one_side_is_caught():
    def add(s):
        step = s["adp.StepEvent"]["fields"][7]["type"][1]
        step["fields"].append({"name": "reward", "type": "double"})

    problems = problems_after(add)
    assert any(p.startswith("adp.Step: Avro fields") for p in problems)


def test_changed_type_order_optional_enum_and_default_are_caught():
    def retype(s):
        s["adp.Task"]["fields"][4]["type"] = "string"  # max_steps: int -> string

    assert any("adp.Task.max_steps: Avro string" in p for p in problems_after(retype))

    def reorder(s):
        f = s["adp.Task"]["fields"]
        f[2], f[3] = f[3], f[2]

    assert any("adp.Task: Avro fields" in p for p in problems_after(reorder))

    def not_null(s):
        s["adp.StepEvent"]["fields"][6]["type"] = "adp.Task"  # task: no longer optional
        del s["adp.StepEvent"]["fields"][6]["default"]

    assert any(
        "adp.StepEvent.task: Avro record adp.Task but Python" in p for p in problems_after(not_null)
    )

    def symbol(s):
        s["adp.Task"]["fields"][1]["type"]["symbols"].append("math")

    assert any("symbols" in p for p in problems_after(symbol))

    def default(s):
        s["adp.Task"]["fields"][6]["default"] = 7  # priority 5 -> 7

    assert any("adp.Task.priority: Avro default 7" in p for p in problems_after(default))

    def json_to_string(s):
        s["adp.Task"]["fields"][7]["type"] = "string"  # constraints loses json type

    assert any("adp.Task.constraints: Avro string" in p for p in problems_after(json_to_string))


def test_model_side_type_changes_are_caught():
    Finish2 = create_model(
        "Finish",
        __base__=contracts._Record,
        **{
            n: (f.annotation, f)
            for n, f in contracts.Finish.model_fields.items()
            if n != "step_count"
        },
        step_count=(str, ...),
    )

    class StepEvent2(contracts.StepEvent):
        finish: Finish2 | None = None  # type: ignore[valid-type]

    problems = problems_after(models={"adp.StepEvent": StepEvent2, "adp.Finish": Finish2})
    assert any("adp.Finish.step_count: Avro int but Python" in p for p in problems)

    class TaskType(str, enum.Enum):  # one symbol short
        reasoning = "reasoning"
        code = "code"

    Task3 = create_model(
        "Task",
        __base__=contracts._Record,
        **{
            n: (TaskType if n == "task_type" else f.annotation, f)
            for n, f in contracts.Task.model_fields.items()
        },
    )
    problems = problems_after(models={"adp.Task": Task3})
    assert any("enum adp.TaskType symbols" in p for p in problems)


@pytest.mark.parametrize("bad", ["int", {"type": "array", "items": "string"}])
def test_json_logical_type_must_map_to_any_or_dict(bad):
    def edit(s):
        meta = next(f for f in s["adp.Trajectory"]["fields"] if f["name"] == "metadata")
        next(f for f in meta["type"]["fields"] if f["name"] == "task")["type"] = bad

    assert any("adp.TrajectoryMetadata.task" in p for p in problems_after(edit))


def test_step_report_is_the_step_contract_without_step_id():
    """Runtimes report StepReports and the attempt numbers them into Steps: the two must carry the
    same fields (name, type, default), in the same order, but for step_id."""
    from adp.runtimes.base import StepReport

    def shape(model: type[BaseModel]) -> list[tuple]:
        return [
            (name, f.annotation, f.is_required(), f.default)
            for name, f in model.model_fields.items()
        ]

    assert shape(StepReport) == [f for f in shape(contracts.Step) if f[0] != "step_id"]
    report = StepReport(
        action_type="python",
        action_params={"code": "print(1)"},
        observation="1\n",
        success=True,
        timestamp=1.0,
        duration=0.5,
    )
    step = report.numbered(3)
    assert step.step_id == 3 and step.model_dump(exclude={"step_id"}) == report.model_dump()
