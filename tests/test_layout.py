"""The package's shape: one installed package `adp`, one rule from import to file, and floors.

The rule: the package `adp.X` is the top-level folder X, so `adp.X.a.b` is the file X/a/b.py (or
X/a/b/__init__.py); `adp` itself is adp/ and holds only the version and `python -m adp`.

A floor imports only floors below it (and itself). Floors, lowest first:

    adp.schemas        the records and their wire format
    adp.core           settings, errors, registry, metrics, processes
    adp.streams.kafka  the Kafka plumbing (clients, topics, admin, the broker)
    adp.connectors  |  adp.runtimes      side by side: never import each other
    adp.streams        the stages: producer, runtime worker, aggregator
    adp.streams.inspection               read-only tools over the stages' output
    adp.client         the trainer's API: submit rollouts, consume groups of samples
    adp.app            the command line, the demo, the console

No two modules import each other, directly or around a loop, counting the imports made inside
functions too (a lazy import is still a dependency). Read from the source with `ast`, so nothing
is imported to check it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
TOP_FOLDERS = ["adp", "schemas", "core", "connectors", "runtimes", "streams", "client", "app"]

FLOORS = {
    "adp.schemas": 0,
    "adp.core": 1,
    "adp.streams.kafka": 2,
    "adp.connectors": 3,
    "adp.runtimes": 3,
    "adp.streams": 4,
    "adp.streams.inspection": 5,
    "adp.client": 6,
    "adp.app": 7,
}
# where Python code is not a module of the package: the demo site's data, the console's assets
DATA_ONLY = {"app/site", "app/site/list", "app/console/static", "app/console/static/js"}


def module_name(path: Path) -> str:
    """The rule itself: the dotted name of a source file, from its path alone."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) if parts[0] == "adp" else ".".join(["adp", *parts])


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top in TOP_FOLDERS:
        for file in (ROOT / top).rglob("*.py"):
            out[module_name(file)] = file
    return out


MODULES = _modules()
PACKAGES = {name for name, file in MODULES.items() if file.name == "__init__.py"}


def _imports(name: str, file: Path) -> set[str]:
    """The platform modules `name` imports anywhere in its file."""
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in MODULES)
    return found - {name}


GRAPH = {name: _imports(name, file) for name, file in MODULES.items()}


def _floor_package(module: str) -> str:
    return max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)


def test_every_top_folder_is_adp_dot_its_name():
    """pyproject maps each package the rule's way (adp.X -> X) and nothing else."""
    mapping = SETUPTOOLS["package-dir"]
    assert mapping == {("adp" if f == "adp" else f"adp.{f}"): f for f in TOP_FOLDERS}


def test_every_folder_of_code_is_a_listed_package():
    """A folder of .py files that pyproject does not list would be missing from the wheel; a
    listed package without a folder is a typo."""
    listed = set(SETUPTOOLS["packages"])
    with_code = {module_name(f.parent / "__init__.py") for f in MODULES.values()}
    assert with_code - listed == set(), "folders of code missing from pyproject's packages"
    data = {module_name(ROOT / d / "__init__.py") for d in DATA_ONLY}
    assert listed - with_code - data == set(), "listed packages without code"
    missing_init = sorted(
        str(f.parent.relative_to(ROOT))
        for f in MODULES.values()
        if not (f.parent / "__init__.py").exists()
    )
    assert not missing_init, f"folders of code without __init__.py: {missing_init}"


def test_adp_holds_only_the_package_root():
    assert sorted(p.name for p in (ROOT / "adp").iterdir() if p.name != "__pycache__") == [
        "__init__.py",
        "__main__.py",
    ]


def test_floors_only_import_downwards():
    wrong = []
    for module, targets in GRAPH.items():
        if module in ("adp", "adp.__main__"):
            continue
        mine = _floor_package(module)
        for target in targets:
            theirs = _floor_package(target) if target != "adp" else None
            if theirs is None or theirs == mine:
                continue
            if FLOORS[theirs] >= FLOORS[mine]:
                wrong.append(f"{module} (floor {mine}) imports {target} (floor {theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_runtime_worker_and_aggregator_never_import_each_other():
    """Two stages side by side: what they share lives in adp.streams.kafka or below."""
    wrong = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        for t in targets
        for a, b in (("runtime", "aggregator"), ("aggregator", "runtime"))
        if m.startswith(f"adp.streams.{a}") and t.startswith(f"adp.streams.{b}")
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_application_imports_click():
    """Library code raises adp.core.errors; only app/ talks to a terminal for a command."""
    offenders = []
    for name, file in MODULES.items():
        if name.startswith("adp.app"):
            continue
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{name}: {n}" for n in names if n.split(".")[0] == "click" or n == "rich.console"
            ]
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles_between_modules():
    """Tarjan's strongly connected components: any with more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_nothing_imports_the_source_folders_by_their_own_names():
    """`import streams` would load a second copy of a module beside `adp.streams`."""
    bare = set(TOP_FOLDERS) - {"adp"}
    offenders = []
    for path in [
        *MODULES.values(),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
        *(ROOT / "examples").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in bare
            ]
    assert not offenders, "\n".join(offenders)


def test_the_rule_finds_what_python_imports():
    """The checks above cannot pass vacuously: the rule's file is the file Python loads, and the
    graph sees imports."""
    import importlib

    for name in (
        "adp.app.cli",
        "adp.schemas.codec",
        "adp.streams.runtime.worker",
        "adp.connectors.sinks.file",
        "adp.core.settings",
        "adp.streams.kafka",
    ):
        assert Path(importlib.import_module(name).__file__) == MODULES[name]
    assert "adp.schemas.contracts" in GRAPH["adp.schemas.codec"]
    assert "adp.streams.kafka.topics" in GRAPH["adp.streams.runtime.worker"]


def test_bench_parts_have_one_key_each_their_file_names_prefix():
    """`python -m bench n` must name one part: parts from parallel branches once shared a key."""
    from bench.__main__ import discover

    parts = discover()
    keys = [m.KEY for m in parts]
    assert len(parts) >= 10 and len(set(keys)) == len(keys), keys
