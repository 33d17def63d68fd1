"""Find runtimes by name through the `adp.runtimes` entry-point group.

The built-in runtimes register in this project's pyproject.toml; a third-party package
registers its own the same way:

    [project.entry-points."adp.runtimes"]
    my-code = "my_package.runtime:MyCodeRuntime"

`adp runtime my-code` then consumes the topic of the runtime class's `task_type` (one of
reasoning, code, web) in its own consumer group adp-runtime-<task_type>. See README
"Custom runtimes".
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "adp.runtimes"


class UnknownRuntime(LookupError):
    pass


def available() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_runtime(name: str) -> type:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep.load()
    names = ", ".join(sorted(available())) or "none"
    raise UnknownRuntime(f"no runtime named {name!r} (installed: {names})")
