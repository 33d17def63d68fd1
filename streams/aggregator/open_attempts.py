"""The open attempts of each scope (adp.steps partition), ordered by their last event: what lets
an expiry sweep touch only the attempts that are due, not the whole state store.

TrajectoryAssembler (streams/aggregator/assembly.py) keeps one AttemptDeadlines beside its store. An
attempt's `last` is the scope's watermark when its latest new event arrived, and a scope's
watermark never goes back, so attempts are almost always touched in order of `last`: each scope
is an insertion-ordered dict ((task key, attempt_id) -> last) whose front holds the oldest, and
`pop_due` stops at the first attempt that is not due. The rare out-of-order touch (a task whose
partition changed after `adp topics grow steps`, an index rebuilt from a store) marks the scope
unsorted and the next `pop_due` sorts it once.

The index is a hint, never the truth: the store is. The assembler checks every attempt it pops
against the store, and rebuilds the index from the store whenever the store may have changed
behind its back (a Faust table restored after a rebalance).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

AttemptKey = tuple[str, str]  # (task key, attempt_id)


class AttemptDeadlines:
    def __init__(self) -> None:
        self._scopes: dict[int, dict[AttemptKey, float]] = {}
        self._newest: dict[int, float] = {}  # the largest `last` touched per scope
        self._unsorted: set[int] = set()

    def __len__(self) -> int:
        return sum(len(s) for s in self._scopes.values())

    def __contains__(self, item: tuple[int, AttemptKey]) -> bool:
        scope, key = item
        return key in self._scopes.get(scope, {})

    def touch(self, scope: int, key: AttemptKey, last: float) -> None:
        """The attempt's latest new event came at watermark `last` (moves it to the back)."""
        attempts = self._scopes.setdefault(scope, {})
        if attempts.get(key) == last:
            return
        attempts.pop(key, None)
        attempts[key] = last
        if last < self._newest.get(scope, last):
            self._unsorted.add(scope)
        else:
            self._newest[scope] = last

    def discard(self, scope: int, key: AttemptKey) -> None:
        """The attempt is no longer open (completed, superseded, expired) in this scope."""
        attempts = self._scopes.get(scope)
        if attempts is not None:
            attempts.pop(key, None)

    def pop_due(self, scope: int, now: float, expire_after: float) -> list[AttemptKey]:
        """Remove and return the attempts of `scope` with last + expire_after < now, oldest
        first; touches only those (plus one that is not due)."""
        attempts = self._scopes.get(scope)
        if not attempts:
            return []
        if scope in self._unsorted:
            self._scopes[scope] = attempts = dict(sorted(attempts.items(), key=lambda kv: kv[1]))
            self._unsorted.discard(scope)
        due: list[AttemptKey] = []
        for key, last in attempts.items():
            if not last + expire_after < now:
                break
            due.append(key)
        for key in due:
            del attempts[key]
        return due

    def scopes(self) -> list[int]:
        return list(self._scopes)

    def rebuild(self, entries: Iterable[tuple[int, AttemptKey, float]]) -> None:
        """Forget everything and index (scope, key, last) entries, in any order."""
        self._scopes.clear()
        self._newest.clear()
        self._unsorted.clear()
        for scope, key, last in sorted(entries, key=lambda e: e[2]):
            self.touch(scope, key, last)

    def __iter__(self) -> Iterator[tuple[int, AttemptKey, float]]:
        for scope, attempts in self._scopes.items():
            for key, last in attempts.items():
                yield scope, key, last
