"""Name -> implementation tables: the one way the platform finds a class or function by name.

A Registry holds built-in entries as "module:attribute" strings, imported only when asked for
(so `adp --help` or a sink that is never used costs no import), and, optionally, an entry-point
group through which other installed packages add their own (runtimes, verifiers). A name
nobody registered is a BadInput that lists the names that exist.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from adp.core.errors import BadInput


def load(target: str) -> Any:
    """The object a "module:attribute" string names (ImportError/AttributeError if it cannot)."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry:
    """`what` names the kind of thing in messages ("sink", "runtime"); `builtin` maps names to
    "module:attribute"; `group` is an entry-point group whose entries join (and may replace)
    them; `aliases` maps other spellings to names."""

    def __init__(
        self,
        what: str,
        builtin: Mapping[str, str] | None = None,
        group: str | None = None,
        aliases: Mapping[str, str] | None = None,
        error: type[BadInput] = BadInput,
    ) -> None:
        self.what, self.group, self.error = what, group, error
        self.builtin = dict(builtin or {})
        self.aliases = dict(aliases or {})

    def entries(self) -> dict[str, str]:
        """Every registered name and its target."""
        found = dict(self.builtin)
        if self.group:
            found.update({ep.name: ep.value for ep in entry_points(group=self.group)})
        return found

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.entries()

    def load(self, name: str) -> Any:
        """The object registered as `name`; BadInput naming the known ones if there is none, or
        if its module cannot be imported."""
        target = self.entries().get(self.aliases.get(name, name))
        if target is None:
            known = ", ".join(self.names()) or "none"
            raise self.error(f"no {self.what} named {name!r} (known: {known})")
        try:
            return load(target)
        except (ImportError, AttributeError) as exc:
            raise self.error(
                f"{self.what} {name!r} is unavailable: {type(exc).__name__}: {exc}"
            ) from exc
