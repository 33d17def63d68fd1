"""The package's shape: one installed package `adp` whose subpackages are floors.

A floor imports only floors below it (and itself): schemas < core < connectors, runtimes <
streams < adp (the application: CLI, demo). connectors and runtimes sit side by side and never
import each other. No two modules import each other, directly or around a loop, counting the
imports made inside functions too (a lazy import is still a dependency). Read from the source
with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

# package -> floor; a module belongs to the longest package prefix that names it
FLOORS = {
    "adp.schemas": 0,
    "adp.core": 1,
    "adp.connectors": 2,
    "adp.runtimes": 2,
    "adp.streams": 3,
    "adp": 4,
}


def _source_dir(package: str) -> Path:
    """Where a package's files are, through the package-dir mapping of pyproject.toml."""
    best = max((p for p in PACKAGE_DIRS if package == p or package.startswith(p + ".")), key=len)
    rest = package[len(best):].lstrip(".")
    return ROOT / PACKAGE_DIRS[best] / Path(*rest.split(".")) if rest else ROOT / PACKAGE_DIRS[best]


def _modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> file."""
    out: dict[str, Path] = {}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        folder = _source_dir(package)
        for file in folder.glob("*.py"):
            name = package if file.stem == "__init__" else f"{package}.{file.stem}"
            out[name] = file
    return out


MODULES = _modules()


def _imports(name: str, file: Path) -> set[str]:
    """The platform modules `name` imports anywhere in its file."""
    package = name if file.stem == "__init__" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES)
    return found - {name}


GRAPH = {name: _imports(name, file) for name, file in MODULES.items()}


def _floor_package(module: str) -> str:
    return max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)


def test_every_source_folder_is_a_listed_package():
    """A folder of .py files under a mapped root that pyproject does not list would be missing
    from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for package, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("*.py"):
            rel = init.parent.relative_to(ROOT / folder)
            dotted = ".".join([package, *rel.parts])
            assert dotted in listed, f"{init.relative_to(ROOT)} is not in a listed package {dotted}"


def test_floors_only_import_downwards():
    wrong = []
    for module, targets in GRAPH.items():
        mine = _floor_package(module)
        for target in targets:
            theirs = _floor_package(target)
            if theirs == mine or target == "adp":
                continue
            if FLOORS[theirs] >= FLOORS[mine]:
                wrong.append(f"{module} (floor {mine}) imports {target} (floor {theirs})")
    assert not wrong, "\n".join(sorted(wrong))


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
    bare = {folder.split("/")[0] for folder in PACKAGE_DIRS.values()} - {"adp"}
    offenders = []
    for path in [*MODULES.values(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"),
                 *(ROOT / "examples").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in bare]
    assert not offenders, "\n".join(offenders)


def test_the_floors_are_what_this_test_thinks_they_are():
    """The checks above cannot pass vacuously: they see the modules and their imports."""
    assert {"adp.cli", "adp.schemas.codec", "adp.streams.worker", "adp.runtimes.code",
            "adp.connectors.sinks.file", "adp.core.settings"} <= set(MODULES)
    assert "adp.schemas.contracts" in GRAPH["adp.schemas.codec"]
    assert "adp.streams.topics" in GRAPH["adp.streams.worker"]
