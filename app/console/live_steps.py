"""Live step events for the console: one follower of adp.steps (streams/inspection/tail.py's
`follow`, no consumer group) shared by every open page, each page with its own `adp tail` filter.

A page that connects first gets the recent events that pass its filter (the last minutes are
read at start), then each new one as it arrives. If the follower fails (the broker went away
and a call gave up) it starts again from just before the last event it saw; events seen twice
are dropped, so a page shows each event once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from adp.app.console.hub import Hub, Subscription
from adp.schemas.contracts import StepEvent
from adp.streams.inspection.tail import StepFilter, follow

log = logging.getLogger(__name__)

BACKLOG = 300  # recent events kept for pages that connect
HISTORY = 15 * 60.0  # seconds of adp.steps read when the console starts
SEEN = 20_000  # event identities remembered to drop re-reads
SHORT = 600  # characters of an observation / answer in a live row


class LiveSteps:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.hub = Hub()
        self.recent: deque[tuple[StepEvent, dict]] = deque(maxlen=BACKLOG)
        self._seen: set[tuple] = set()
        self._seen_order: deque[tuple] = deque()
        self.last_timestamp: float | None = None
        self.skipped = 0  # undecodable records on adp.steps

    async def run(self, stop: asyncio.Event) -> None:
        since = time.time() - HISTORY
        while not stop.is_set():
            try:
                await follow(self.bootstrap, StepFilter(), self._emit, since=since, stop=stop)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
                    raise  # we are being stopped (aiokafka may leak one of its own otherwise)
                log.warning(
                    "following adp.steps failed (%s); starting again",
                    str(exc) or type(exc).__name__,
                )
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except TimeoutError:
                    pass
            if self.last_timestamp is not None:
                # create times are not ordered across producers: start a little earlier
                since = self.last_timestamp - 30

    def subscribe(self, keep: StepFilter) -> Subscription:
        sub = self.hub.subscribe(lambda _name, event: keep(event), replay=False)
        for event, view in self.recent:
            if keep(event):
                sub.offer(("step", view))
        return sub

    def _emit(self, event: StepEvent | None, warning: str | None) -> None:
        if event is None:
            self.skipped += 1
            log.debug("%s", warning)
            return
        identity = (
            event.task_id,
            event.attempt_id,
            event.event_type,
            event.step.step_id if event.step else 0,
        )
        if identity in self._seen:
            return
        self._seen.add(identity)
        self._seen_order.append(identity)
        if len(self._seen_order) > SEEN:
            self._seen.discard(self._seen_order.popleft())
        self.last_timestamp = max(self.last_timestamp or 0.0, event.timestamp)
        view = step_view(event)
        self.recent.append((event, view))
        for sub in list(self.hub.subscriptions):
            if sub.keep is None or sub.keep("step", event):
                sub.offer(("step", view))


def step_view(e: StepEvent) -> dict:
    """One live row: what the event says, with long texts cut (the trajectory has them whole)."""
    view: dict = {
        "event": e.event_type,
        "task_id": e.task_id,
        "key": e.key,
        "sample_index": e.sample_index,
        "task_type": e.task_type,
        "attempt_id": e.attempt_id,
        "runtime_id": e.runtime_id,
        "time": e.timestamp,
    }
    if e.step is not None:
        s = e.step
        view.update(
            step_id=s.step_id,
            action=s.action_type,
            success=s.success,
            params=_short(json.dumps(s.action_params, ensure_ascii=False), 300),
            observation=_short(s.observation, SHORT),
            error=_short(s.error or "", 300),
            duration=s.duration,
            tokens=(s.llm.prompt_tokens + s.llm.completion_tokens) if s.llm else None,
        )
    elif e.finish is not None:
        f = e.finish
        view.update(
            success=f.success,
            error_type=f.error_type,
            steps=f.step_count,
            duration=f.total_duration,
            result=_short(f.final_result or f.error or "", SHORT),
            verdict=f.verdict.status if f.verdict is not None else None,
        )
    elif e.task is not None:
        view.update(description=_short(e.task.description, 300))
    return view


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
