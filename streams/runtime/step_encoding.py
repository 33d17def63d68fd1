"""How a step goes on the wire: linear in the attempt's steps, and never over the record limit.

- Its LLM request holds only what the call added to the conversation: the messages after the
  prefix it shares with the previous call of the same attempt, with a reference to that call
  (LlmExchange.prefix_step / prefix_messages; schemas/conversation.py rebuilds it). An agent
  that sends its whole history with every call puts each message on adp.steps once, not once
  per later step.
- A step whose record would be over the record limit (the max_message_bytes setting, less a
  sixteenth of headroom) is not failed or dropped: its largest text (observation, then
  thinking) is kept as a file of the step -- its bytes on adp.artifacts in chunks like any file
  a tool wrote, stored beside the trajectory by the sinks -- and the record keeps the start of
  it with a note naming the file. A step still over the limit after that (a huge LLM exchange
  or action) is kept whole as the file adp-record/step.json, and the record says so; the next
  call's request is then stored whole, as it cannot refer to a request the record lacks.

The size checked is the step's JSON, which is what the aggregator's state holds per step and
bounds its Avro encoding. Steps under SMALL are never measured against the setting.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from adp.core.settings import settings
from adp.schemas.contracts import Artifact, Step
from adp.schemas.conversation import compact_request

SMALL = 256 * 1024  # a step this small is under any record limit a deployment can use
HEAD_CHARS = 4000  # characters of an offloaded text the record keeps
FOLDER = "adp-record"  # the offloaded parts' files: <key>/step-<n>/adp-record/<name>


def record_limit() -> int:
    """The largest step (JSON bytes) that goes on the wire as it is."""
    limit = settings().max_message_bytes
    return limit - limit // 16


def json_size(step: Step) -> int:
    return len(orjson.dumps(step.model_dump(mode="json")))


class StepEncoding:
    """The wire form of one attempt's steps, fed in step order."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._previous: tuple[int, Any] | None = None  # (step_id, full request) of the last call

    @property
    def limit(self) -> int:
        if self._limit is None:
            self._limit = record_limit()
        return self._limit

    def for_wire(self, step: Step) -> tuple[Step, dict[str, bytes]]:
        """The step as it goes on adp.steps, and the bytes of the files it gained (by sha256),
        which must be on adp.artifacts before the step is sent."""
        wire = self.compact(step)
        size = json_size(wire)
        if size <= SMALL or size <= self.limit:
            return wire, {}
        return self.fit(wire, size)

    def compact(self, step: Step) -> Step:
        """The step with its request stored against the previous call of the attempt."""
        llm = step.llm
        if llm is None:
            return step
        if llm.prefix_step is not None:  # stored against an earlier call already
            self._previous = None  # (its request is not whole: nothing can refer to it)
            return step
        previous, self._previous = self._previous, (step.step_id, llm.request)
        if previous is None:
            return step
        request, prefix = compact_request(llm.request, previous[1])
        if prefix == 0:
            return step
        compact = llm.model_copy(
            update={"request": request, "prefix_step": previous[0], "prefix_messages": prefix}
        )
        return step.model_copy(update={"llm": compact})

    def fit(self, step: Step, size: int) -> tuple[Step, dict[str, bytes]]:
        """Offload the step's largest texts to files until its record is under the limit; the
        whole step if that is not enough."""
        fitted, blobs = step, {}
        for field in sorted(
            ("observation", "thinking"), key=lambda f: -len(getattr(step, f) or "")
        ):
            text = getattr(step, field) or ""
            if size <= self.limit or len(text) <= HEAD_CHARS:
                break
            data = text.encode("utf-8")
            artifact = _artifact(f"{field}.txt", "text/plain", data, f"the step's {field}")
            blobs[artifact.sha256] = data
            head = (
                f"{text[:HEAD_CHARS]}\n[{field} of {len(data)} bytes, over the record limit: "
                f"kept whole in the step's file {artifact.name}]"
            )
            fitted = fitted.model_copy(
                update={field: head, "artifacts": [*fitted.artifacts, artifact]}
            )
            size = json_size(fitted)
        if size <= self.limit:
            return fitted, blobs
        return self._whole(step, json_size(step))

    def _whole(self, step: Step, size: int) -> tuple[Step, dict[str, bytes]]:
        """The step kept whole as a file; the record keeps its outline and says where it is."""
        data = orjson.dumps(step.model_dump(mode="json"))
        artifact = _artifact("step.json", "application/json", data, "the whole step")
        if step.llm is not None:
            self._previous = None  # the next request cannot refer to one the record lacks
        outline = Step(
            step_id=step.step_id,
            action_type=step.action_type,
            action_params=None,
            observation=(
                f"[this step is {size} bytes, over the record limit: it is kept whole in its "
                f"file {artifact.name} (action, observation, thinking, LLM exchange)]"
            ),
            success=step.success,
            error=step.error[:HEAD_CHARS] if step.error else None,
            timestamp=step.timestamp,
            duration=step.duration,
            artifacts=[*step.artifacts, artifact],
        )
        return outline, {artifact.sha256: data}


def _artifact(name: str, media_type: str, data: bytes, what: str) -> Artifact:
    return Artifact(
        name=f"{FOLDER}/{name}",
        size=len(data),
        media_type=media_type,
        sha256=hashlib.sha256(data).hexdigest(),
        kept=True,
        note=f"{what}, over the record limit",
    )
