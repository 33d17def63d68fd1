"""Find runtimes by name through the `adp.runtimes` entry-point group.

The built-in runtimes register in this project's pyproject.toml; a third-party package
registers its own the same way:

    [project.entry-points."adp.runtimes"]
    my-code = "my_package.runtime:MyCodeRuntime"

`adp runtime my-code` then consumes the topic of the runtime class's `task_type` (one of
reasoning, code, web) in its own consumer group adp-runtime-<task_type>. See
docs/tasks.md, "Custom runtimes".
"""

from __future__ import annotations

from adp.core.errors import BadInput
from adp.core.registry import Registry


class UnknownRuntime(BadInput, LookupError):
    pass


RUNTIMES = Registry("runtime", group="adp.runtimes", error=UnknownRuntime)


def available() -> dict[str, str]:
    return RUNTIMES.entries()


def load_runtime(name: str) -> type:
    return RUNTIMES.load(name)
