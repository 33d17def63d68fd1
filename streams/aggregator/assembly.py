"""Trajectory assembly: step events in, trajectories and counters out. Pure and broker-free.

The Faust aggregator (streams/aggregator/faust_app.py) and `adp replay` both feed events to a
TrajectoryAssembler in the order a partition of adp.steps holds them, so the same events give
the same trajectories, byte for byte once rendered (connectors.sinks.base.render).

Rules (README, "Delivery guarantees"). A "task" below is one sample of a task, named by its key
(StepEvent.key: the task_id, or "<task_id>/<i>" for sample i > 0), so k samples give k
trajectories:
- one trajectory per key, built from exactly ONE attempt that has its started event, its
  finished event and steps 1..n with n = finish.step_count (no gap, nothing extra);
- the first attempt to complete wins; every other attempt of that task is dropped
  (`attempts_superseded`); events arriving for a completed task are dropped (`late_events_dropped`)
  thanks to a small durable "done" record {task_id: attempt_id}, so a task produced again
  (the same file twice) gives no second trajectory;
- a done record is forgotten `forget_done_after` seconds (event time, default 7 days) after its
  task completed (`done_forgotten`): the state follows the tasks in flight and those finished
  recently, not every task ever finished. A copy of the task produced later than that runs and
  is written again (same task_id: the file sink replaces the file, the compacted
  adp.trajectories keeps the newer record). Done records written before this rule existed
  carry no completion time and are kept;
- a repeated event (same attempt, same event type, same step_id) is ignored (`duplicates_dropped`);
  the first copy counts;
- an attempt with no new event for `expire_after` seconds is dropped (`attempts_expired`).

Time is event time, never the wall clock: each scope (a partition of adp.steps) has a watermark,
the largest event timestamp seen in it. An attempt is stale once watermark > last + expire_after,
where `last` is the watermark when the attempt's latest new event arrived. The attempt is checked
whenever an event of its task arrives, and a sweep over the scope runs as the watermark advances
(or when a caller calls `expire(now)`), so the outcome does not depend on when sweeps happen.

State lives in `store`, a MutableMapping[str, dict] of plain JSON-able dicts (a dict here, a Faust
table in the aggregator). Values are only ever replaced, never mutated in place, so a changelogged
table sees every change. Each step is its own entry, so one changelog record never carries a whole
attempt (a task's header stays small however long its LLM requests are). Keys:
  task_id                      in flight: {"scope": 3, "attempts": {attempt_id: {"last": w,
                               "started": {...} | None, "finished": {...} | None, "steps": [1, 2]}}}
                               done:      {"scope": 3, "done": attempt_id, "at": w}
  task_id\\x00attempt\\x00step_id  one step, JSON mode
  \\x00wm:<scope>              {"watermark": w}
"""

from __future__ import annotations

import copy
import logging
from collections.abc import MutableMapping
from typing import Any

from adp.schemas.contracts import EventType, StepEvent, Trajectory
from adp.streams.aggregator.build import build_trajectory
from adp.streams.aggregator.open_attempts import AttemptDeadlines

log = logging.getLogger(__name__)

DEFAULT_EXPIRE_AFTER = 900.0
DEFAULT_FORGET_DONE_AFTER = 7 * 24 * 3600.0
WATERMARK_PREFIX = "\x00wm:"
COUNTERS = (
    "events",
    "completed",
    "duplicates_dropped",
    "attempts_superseded",
    "attempts_expired",
    "late_events_dropped",
    "inconsistent_attempts",
    "done_forgotten",
)


class InvalidEvent(ValueError):
    """A decodable StepEvent that breaks the event contract (e.g. `step` without a step)."""


def _check(event: StepEvent) -> None:
    kind = EventType(event.event_type)
    if kind is EventType.started:
        if event.task is None:
            raise InvalidEvent("started event without task")
        if event.task.task_id != event.task_id:
            raise InvalidEvent(
                f"started event for {event.task_id!r} carries task {event.task.task_id!r}"
            )
        if event.task.sample_index != event.sample_index:
            raise InvalidEvent(
                f"started event of sample {event.sample_index} carries sample "
                f"{event.task.sample_index} of {event.task_id!r}"
            )
    elif kind is EventType.step and event.step is None:
        raise InvalidEvent("step event without step")
    elif kind is EventType.finished and event.finish is None:
        raise InvalidEvent("finished event without finish")


class TrajectoryAssembler:
    """Feed StepEvents in partition order; get each task's Trajectory once, when it completes."""

    def __init__(
        self,
        store: MutableMapping[str, dict] | None = None,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        sweep_every: float | None = None,
        forget_done_after: float | None = DEFAULT_FORGET_DONE_AFTER,
    ) -> None:
        """`forget_done_after`: seconds of event time a done record is kept (None: forever)."""
        if expire_after <= 0:
            raise ValueError("expire_after must be positive")
        if forget_done_after is not None and forget_done_after <= 0:
            raise ValueError("forget_done_after must be positive (None: keep done records)")
        self.store: MutableMapping[str, dict] = {} if store is None else store
        self.expire_after = float(expire_after)
        self.forget_done_after = forget_done_after
        # How far (event time) the watermark moves between sweeps of a scope.
        self.sweep_every = float(
            sweep_every if sweep_every is not None else max(1.0, min(60.0, expire_after / 10))
        )
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._watermarks: dict[int, float] = {}
        self._last_sweep: dict[int, float] = {}
        # open attempts by their last event, and done records by their completion, so a sweep
        # touches only the due ones
        self._deadlines = AttemptDeadlines()
        self._done = AttemptDeadlines()
        self._indexed = False

    def reindex(self) -> None:
        """The store changed behind the assembler's back (a Faust table restored or cut
        after a rebalance): rebuild the index of open attempts from it before the next use."""
        self._indexed = False

    def _index(self) -> AttemptDeadlines:
        if not self._indexed:
            headers = [(tid, state) for tid, state in self.store.items() if "\x00" not in tid]
            self._deadlines.rebuild(
                (state["scope"], (tid, aid), attempt["last"])
                for tid, state in headers
                if "attempts" in state
                for aid, attempt in state["attempts"].items()
            )
            self._done.rebuild(
                (state["scope"], (tid, state["done"]), state["at"])
                for tid, state in headers
                if "at" in state
            )
            self._indexed = True
        return self._deadlines

    # -- counters ------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> int:
        counters = self.__dict__.get("counters")
        if counters is not None and name in counters:
            return counters[name]
        raise AttributeError(name)

    @property
    def in_flight(self) -> int:
        """Tasks with at least one open attempt."""
        return sum(1 for k, v in self.store.items() if "\x00" not in k and "attempts" in v)

    def open_attempts(self) -> int:
        """Attempts not completed, superseded or expired yet (replay's "incomplete")."""
        return sum(
            len(v["attempts"]) for k, v in self.store.items() if "\x00" not in k and "attempts" in v
        )

    # -- state ---------------------------------------------------------------------------------
    def get_state(self, task_id: str) -> dict | None:
        """A copy of the task's header (in flight or done), None if unknown."""
        state = self.store.get(task_id)
        return copy.deepcopy(state) if state is not None else None

    # -- event time ----------------------------------------------------------------------------
    def watermark(self, scope: int = 0) -> float | None:
        if scope not in self._watermarks:
            saved = self.store.get(f"{WATERMARK_PREFIX}{scope}")
            if saved is None:
                return None
            self._watermarks[scope] = float(saved["watermark"])
        return self._watermarks[scope]

    def _advance(self, scope: int, timestamp: float) -> float:
        current = self.watermark(scope)
        wm = timestamp if current is None else max(current, timestamp)
        self._watermarks[scope] = wm
        return wm

    def _stale(self, attempt: dict, now: float) -> bool:
        return attempt["last"] + self.expire_after < now

    # -- the work ------------------------------------------------------------------------------
    def feed(self, event: StepEvent, scope: int = 0, raw: dict | None = None) -> list[Trajectory]:
        """Apply one event (scope: the adp.steps partition it came from). Returns the
        trajectory it completes, if any. Raises InvalidEvent for a contract-breaking event.
        `raw`: the event as plain data, when the caller has it (codec.decode_record): its
        parts are kept as they are instead of dumping them from the model again."""
        _check(event)
        self.counters["events"] += 1
        wm = self._advance(scope, event.timestamp)
        out = self._apply(event, scope, wm, raw)
        if wm >= self._last_sweep.get(scope, float("-inf")) + self.sweep_every:
            self.expire(wm, scope)
        return out

    def _apply(self, event: StepEvent, scope: int, wm: float, raw: dict | None) -> list[Trajectory]:
        tid, aid = event.key, event.attempt_id
        old = self.store.get(tid)
        if old is not None and "done" in old:
            self.counters["late_events_dropped"] += 1
            return []
        attempts: dict[str, dict] = dict(old["attempts"]) if old else {}
        index = self._index()
        changed = False
        for other, attempt in list(attempts.items()):
            if self._stale(attempt, wm):
                self._drop(tid, other, attempts.pop(other))
                index.discard(old["scope"], (tid, other))
                self.counters["attempts_expired"] += 1
                log.info(
                    "task %s: attempt %s expired (no event for %.0fs)",
                    tid,
                    other,
                    wm - attempt["last"],
                )
                changed = True
        attempt = dict(
            attempts.get(aid) or {"last": wm, "started": None, "finished": None, "steps": []}
        )
        if self._record(tid, aid, attempt, event, raw):
            attempt["last"] = wm
            attempts[aid] = attempt
            changed = True
            trajectory = self._complete(tid, aid, attempt)
            if trajectory is not None:
                self.counters["completed"] += 1
                self.counters["attempts_superseded"] += len(attempts) - 1
                for other, a in attempts.items():
                    self._drop(tid, other, a)
                    index.discard(scope, (tid, other))
                    if old is not None:
                        index.discard(old["scope"], (tid, other))
                    if other != aid:
                        log.info("task %s: attempt %s superseded by %s", tid, other, aid)
                self.store[tid] = {"scope": scope, "done": aid, "at": wm}
                self._done.touch(scope, (tid, aid), wm)
                return [trajectory]
        else:
            self.counters["duplicates_dropped"] += 1
        if changed:
            if attempts:
                self.store[tid] = {"scope": scope, "attempts": attempts}
                for other, a in attempts.items():
                    index.touch(scope, (tid, other), a["last"])
            elif old is not None:
                del self.store[tid]
        return []

    def _record(
        self, tid: str, aid: str, attempt: dict, event: StepEvent, raw: dict | None
    ) -> bool:
        """Put the event into the (copied) attempt header / the store; False if a repeat."""

        def part(name: str) -> dict:  # the part in JSON mode
            return raw[name] if raw is not None else getattr(event, name).model_dump(mode="json")

        kind = EventType(event.event_type)
        if kind is EventType.started:
            if attempt["started"] is not None:
                return False
            attempt["started"] = {
                "timestamp": event.timestamp,
                "runtime_id": event.runtime_id,
                "task": part("task"),
            }
        elif kind is EventType.step:
            step_id = event.step.step_id
            if step_id in attempt["steps"]:
                return False
            self.store[step_key(tid, aid, step_id)] = part("step")
            attempt["steps"] = sorted([*attempt["steps"], step_id])
        else:
            if attempt["finished"] is not None:
                return False
            attempt["finished"] = {
                "timestamp": event.timestamp,
                "runtime_id": event.runtime_id,
                "finish": part("finish"),
            }
        return True

    def _complete(self, tid: str, aid: str, attempt: dict) -> Trajectory | None:
        started, finished = attempt["started"], attempt["finished"]
        if started is None or finished is None:
            return None
        n = finished["finish"]["step_count"]
        if attempt["steps"] != list(range(1, n + 1)):
            return None
        try:
            steps = [self.store[step_key(tid, aid, i)] for i in range(1, n + 1)]
        except KeyError as missing:  # state cut by a crash: this attempt cannot be assembled
            log.error(
                "task %s attempt %s: step entry %r missing from the state; the attempt "
                "is left to expire",
                tid,
                aid,
                missing.args[0],
            )
            self.counters["inconsistent_attempts"] += 1
            return None
        return build_trajectory(aid, started, finished, steps)

    def _drop(self, tid: str, aid: str, attempt: dict) -> None:
        for step_id in attempt["steps"]:
            self.store.pop(step_key(tid, aid, step_id), None)

    def expire(self, now: float, scope: int | None = None) -> int:
        """Drop attempts whose latest new event is more than expire_after before `now` (event
        time); only tasks of `scope` if given. Returns how many attempts were dropped."""
        if scope is not None:
            self._last_sweep[scope] = now
            if self.watermark(scope) is None or now > self._watermarks[scope]:
                self._watermarks[scope] = now
            self.store[f"{WATERMARK_PREFIX}{scope}"] = {"watermark": self._watermarks[scope]}
        index = self._index()
        due: dict[str, list[str]] = {}  # task key -> its attempts the index says are due
        for sweep in [scope] if scope is not None else index.scopes():
            for tid, aid in index.pop_due(sweep, now, self.expire_after):
                due.setdefault(tid, []).append(aid)
        dropped = 0
        for tid, aids in due.items():
            state = self.store.get(tid)
            if state is None or "attempts" not in state:
                continue
            if scope is not None and state.get("scope") != scope:
                continue  # the index entry of a task that moved on to another scope
            expired = {
                aid
                for aid in aids
                if aid in state["attempts"] and self._stale(state["attempts"][aid], now)
            }
            for aid in set(aids) - expired:  # the index was behind: the attempt lives on
                if aid in state["attempts"]:
                    index.touch(state["scope"], (tid, aid), state["attempts"][aid]["last"])
            if not expired:
                continue
            keep = {aid: a for aid, a in state["attempts"].items() if aid not in expired}
            for aid in expired:
                self._drop(tid, aid, state["attempts"][aid])
                log.info("task %s: attempt %s expired", tid, aid)
            dropped += len(expired)
            if keep:
                self.store[tid] = {**state, "attempts": keep}
            else:
                del self.store[tid]
        self.counters["attempts_expired"] += dropped
        if self.forget_done_after is not None:
            self._forget_done(now, scope)
        return dropped

    def _forget_done(self, now: float, scope: int | None) -> None:
        """Delete the done records of tasks completed more than forget_done_after before
        `now` (event time); only of `scope` if given."""
        for sweep in [scope] if scope is not None else self._done.scopes():
            for tid, aid in self._done.pop_due(sweep, now, self.forget_done_after):
                state = self.store.get(tid)
                if state is None or state.get("done") != aid or state.get("scope") != sweep:
                    continue  # the index was behind the store
                if not state["at"] + self.forget_done_after < now:
                    self._done.touch(sweep, (tid, aid), state["at"])
                    continue
                del self.store[tid]
                self.counters["done_forgotten"] += 1


def step_key(task_id: str, attempt_id: str, step_id: int) -> str:
    return f"{task_id}\x00{attempt_id}\x00{step_id}"


def assemble(
    events: list[StepEvent], expire_after: float = DEFAULT_EXPIRE_AFTER, scope: int = 0
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Convenience: run a whole event sequence through a fresh assembler."""
    assembler = TrajectoryAssembler(expire_after=expire_after)
    out: list[Trajectory] = []
    for event in events:
        out.extend(assembler.feed(event, scope))
    return out, dict(assembler.counters)
