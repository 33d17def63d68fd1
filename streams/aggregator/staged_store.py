"""StagedStore: the write-behind view of the aggregator's Faust table that lets a batch of step
events reach the table (and its changelog) only after the batch's trajectories are acknowledged
(streams/aggregator/faust_app.py), each key once per batch, in an order whose every prefix
is consistent."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from adp.streams.aggregator.assembly import WATERMARK_PREFIX

_DELETED = object()


def is_step_key(key: str) -> bool:
    return "\x00" in key and not key.startswith(WATERMARK_PREFIX)


class StagedStore(MutableMapping):
    """A write-behind view of a table: reads see staged writes; `apply()` writes them through.

    Made once and kept: the caller feeds a batch of events (setting `scope` to the partition
    they came from), publishes what the batch completed, and only then applies the batch's
    writes. A key written many times in a batch is written once; a key set and deleted within
    the batch that the table never had is not written at all (most step entries of a task that
    starts and finishes within a batch never reach the changelog)."""

    def __init__(self, table: MutableMapping) -> None:
        self.table = table
        self.scope = 0  # the partition whose events are being fed (where writes belong)
        self.staged: dict[str, tuple[int, Any]] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.staged:
            value = self.staged[key][1]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self.table[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.staged[key] = (self.scope, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.staged[key] = (self.scope, _DELETED)

    def __contains__(self, key: object) -> bool:
        if key in self.staged:
            return self.staged[key][1] is not _DELETED
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        for key in list(self.table.keys()):
            if key not in self.staged:
                yield key
        for key, (_, value) in list(self.staged.items()):
            if value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def apply(self, write: Any = None, delete: Any = None) -> int:
        """Write the staged changes through; returns how many table writes that took.
        `write(scope, key, value)` / `delete(scope, key)` default to plain table writes.

        Each write is its own changelog record, so a kill -9 can keep any prefix of them; the
        order makes every prefix consistent: step entries first, then task headers (which
        name their steps), then deleted headers, then deleted step entries. A prefix may leave
        orphan step entries (harmless), never a header that points at a missing step."""
        if write is None:

            def write(_scope: int, key: str, value: Any) -> None:
                self.table[key] = value

        if delete is None:

            def delete(_scope: int, key: str) -> None:
                self.table.pop(key, None)

        sets = [(k, sv) for k, sv in self.staged.items() if sv[1] is not _DELETED]
        dels = [(k, sv) for k, sv in self.staged.items() if sv[1] is _DELETED and k in self.table]
        writes = 0
        for steps_first in (True, False):
            for key, (scope, value) in sets:
                if is_step_key(key) == steps_first:
                    write(scope, key, value)
                    writes += 1
        for steps_last in (False, True):
            for key, (scope, _) in dels:
                if is_step_key(key) == steps_last:
                    delete(scope, key)
                    writes += 1
        self.staged.clear()
        return writes
