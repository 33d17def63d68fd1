"""Records over the record limit: their bytes in chunks on adp.artifacts, a pointer in their place.

A trajectory carries every step of its attempt, so a long agent's can be larger than the
largest record the cluster takes (the max_message_bytes setting). Such a record is not failed
or dropped: its encoded bytes go to adp.artifacts exactly as a file a step wrote does
(artifacts.publish: 1 MiB chunks keyed by their sha256, acknowledged first), and the topic gets
a record under the same key whose value is empty and whose header `adp-stored-in` says where
the bytes are:

    adp-stored-in: {"topic": "adp.artifacts", "partition": 3, "offsets": [..], "sha256": "..",
                    "size": 41234567}

Readers of the topic take a record's value through `value_of`, which returns the bytes it
points at (read back and checked against their sha256) or the record's own value. The bytes
are the record's encoding, unchanged, so whoever reads them decodes exactly what was written.
A reader that does not know the header meets an empty value, which no codec decodes: it
reports the record as undecodable rather than misreading it.

Step events never need this: a step over the limit keeps its largest parts as files of the
step (streams/runtime/step_encoding.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from adp.schemas.contracts import Artifact, ArtifactLocation
from adp.streams.kafka import artifacts

HEADER = "adp-stored-in"
Fetch = Callable[[Artifact], Awaitable[bytes]]


def record_limit(max_message_bytes: int) -> int:
    """The largest value sent as it is: the setting less a sixteenth of headroom (the record's
    key, headers and batch framing count against the broker's limit too)."""
    return max_message_bytes - max_message_bytes // 16


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes,
    key: bytes,
    headers: list[tuple[str, bytes]] | None = None,
    limit: int | None = None,
) -> Any:
    """producer.send, with a value over `limit` stored in chunks first (see above); returns the
    future of the record's acknowledgement."""
    if limit is None or len(value) <= limit:
        return await producer.send(topic, value, key=key, headers=headers)
    digest = hashlib.sha256(value).hexdigest()
    where = await artifacts.publish(producer, value, digest)
    pointer = {**where.model_dump(mode="json"), "sha256": digest, "size": len(value)}
    return await producer.send(
        topic, b"", key=key, headers=[*(headers or []), (HEADER, json.dumps(pointer).encode())]
    )


def pointer_of(headers: Any) -> Artifact | None:
    """The chunks a record's `adp-stored-in` header points at, as an Artifact to fetch (None for
    a record that holds its own value). Raises ValueError for a header that says nothing
    usable."""
    for name, raw in headers or ():
        if name != HEADER or raw is None:
            continue
        try:
            found = json.loads(bytes(raw))
            location = ArtifactLocation(
                topic=found["topic"], partition=found["partition"], offsets=found["offsets"]
            )
            return Artifact(
                name="record",
                size=found["size"],
                media_type="application/octet-stream",
                sha256=found["sha256"],
                kept=True,
                location=location,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable {HEADER} header: {exc}") from None
    return None


async def value_of(record: Any, fetch: Fetch) -> bytes | None:
    """The record's value: the bytes its header points at (ArtifactFetcher.fetch reads them
    back and checks them), else its own. Raises ValueError or artifacts.ArtifactError when the
    pointed-at bytes cannot be had."""
    pointer = pointer_of(getattr(record, "headers", None))
    if pointer is None:
        return record.value
    return await fetch(pointer)
