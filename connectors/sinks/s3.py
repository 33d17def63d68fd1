"""The S3 sink: trajectories as objects in any S3 API (AWS S3, MinIO, Ceph, moto's server).

Two layouts:

- ``per-task`` (default): one object ``<prefix>/<key>.json`` per trajectory (key: the task_id, or
  ``<task_id>/<i>`` for sample i > 0 of a task run k times) whose body is
  exactly ``render(trajectory)``, the same bytes the file sink writes. A single PutObject is
  atomic (a reader sees the old object or the new one, never half of one), and writing the same
  trajectory again rewrites the same key with the same bytes, so redelivery is idempotent.
- ``jsonl-hourly``: trajectories are buffered and flushed as new objects
  ``<prefix>/dt=YYYY-MM-DD/hour=HH/part-<hash>.jsonl``, one compact JSON line per trajectory,
  partitioned by the trajectory's ``metadata.finished_at`` in UTC (Hive-style, so Athena, Spark
  or DuckDB read the prefix as a partitioned table). A flush happens when the buffer reaches
  ``flush_count`` trajectories or ``flush_bytes`` bytes, when its oldest entry is
  ``flush_interval`` seconds old, on ``flush()`` and on ``close()``. Every flush is one put of a
  new object, never an append. The part name is a hash of the body, so a retried put of the same
  batch lands on the same key; a trajectory written in two different batches (redelivery) shows
  up in two parts, so readers of this layout deduplicate by key (the last finished_at wins).
  Buffered lines are only durable once flushed, so `write()` returning does NOT mean stored
  in this layout: a caller that acknowledges its input calls `flush()` first (BaseSink's
  contract; the aggregator's sink agent flushes at the end of every batch before its offsets
  can be committed, so a part holds at most one sink batch there). per-task has no such gap.

`make_sink("s3", "s3://bucket/prefix")` gives the defaults; ADP_S3_LAYOUT (per-task |
jsonl-hourly) and ADP_S3_CREATE_BUCKET=1 change them without code.

Credentials and region come from the usual AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, instance roles...). For an
S3-compatible server set ``endpoint_url`` or ADP_S3_ENDPOINT_URL (botocore's own
AWS_ENDPOINT_URL_S3 works too).

Throttling (SlowDown, 503, 429), 5xx answers and connection errors are retried with capped
exponential backoff and jitter, ``retries`` times after the first try; anything else (a missing
bucket, access denied) fails at once. A final failure raises ``S3SinkError`` naming the bucket
and key. The sink creates nothing on its own, except the bucket when ``create_bucket=True``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from adp.connectors.sinks.base import BaseSink, SinkError, artifact_name, object_name, render
from adp.connectors.sinks.s3_client import (
    create_client,
    default_endpoint,
    default_region,
    describe,
    error_code,
    retryable,
)
from adp.core.metrics import SINK_WRITES  # adp_sink_writes_total{sink,outcome}: ok, error, retry
from adp.core.settings import settings
from adp.schemas.contracts import Artifact, Trajectory

log = logging.getLogger(__name__)
T = TypeVar("T")

LAYOUTS = ("per-task", "jsonl-hourly")
PUT_CONCURRENCY = 16  # per-task puts in flight in write_batch


class S3SinkError(SinkError):
    """A put (or bucket operation) that finally failed; names the bucket and key."""

    def __init__(self, message: str, bucket: str, key: str | None = None):
        super().__init__(message)
        self.bucket, self.key = bucket, key


def parse_destination(destination: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); the prefix may be empty."""
    if not destination.startswith("s3://"):
        raise ValueError(f"an S3 destination looks like s3://bucket/prefix, got {destination!r}")
    bucket, _, prefix = destination[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 destination {destination!r}")
    return bucket, prefix.strip("/")


class S3Sink(BaseSink):
    """Writes trajectories to ``destination`` (``s3://bucket/prefix``).

    ``retries`` is the number of extra tries after the first; backoff before try n is
    ``min(backoff_max, backoff_base * 2**(n-1))`` scaled by a random factor in [0.5, 1].
    """

    kind = "s3"

    def __init__(
        self,
        destination: str,
        layout: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        retries: int = 5,
        *,
        create_bucket: bool | None = None,
        flush_count: int = 1000,
        flush_bytes: int = 16 * 1024 * 1024,
        flush_interval: float = 60.0,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        timeout: float = 30.0,
    ):
        layout = layout or settings().s3.layout
        if create_bucket is None:
            create_bucket = settings().s3.create_bucket
        if layout not in LAYOUTS:
            raise ValueError(f"unknown S3 layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.destination = destination
        self.bucket, self.prefix = parse_destination(destination)
        self.layout = layout
        self.endpoint_url = endpoint_url or default_endpoint()
        self.region = region or default_region()
        self.retries = retries
        self.create_bucket = create_bucket
        self.flush_count, self.flush_bytes, self.flush_interval = (
            flush_count,
            flush_bytes,
            flush_interval,
        )
        self.backoff_base, self.backoff_max, self.timeout = backoff_base, backoff_max, timeout
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._bucket_ready = False
        # jsonl-hourly buffer: partition ("dt=…/hour=…") -> key -> compact JSON line
        self._buffer: dict[str, dict[str, bytes]] = defaultdict(dict)
        self._buffered_bytes = 0
        self._oldest: float | None = None
        self._timer: asyncio.Task | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Sink({self.destination!r}, layout={self.layout!r})"

    # ---- keys -------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def key_for(self, trajectory: Trajectory) -> str:
        """The per-task layout's object key."""
        return self._key(object_name(trajectory))

    @staticmethod
    def partition_for(trajectory: Trajectory) -> str:
        when = datetime.fromtimestamp(trajectory.metadata.finished_at, tz=UTC)
        return f"dt={when:%Y-%m-%d}/hour={when:%H}"

    @staticmethod
    def jsonl_line(trajectory: Trajectory) -> bytes:
        """One compact JSON line with the same content (and key order) as render()."""
        doc = json.loads(render(trajectory))
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

    # ---- client -----------------------------------------------------------------------------
    async def _s3(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    create_client(self.endpoint_url, self.region, self.timeout)
                )
                self._stack = stack
        return self._client

    async def _call(self, what: str, key: str | None, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run one S3 request, retrying transient failures; raise S3SinkError at the end."""
        where = f"s3://{self.bucket}/{key}" if key is not None else f"bucket {self.bucket!r}"
        attempt = 0
        while True:
            client = await self._s3()
            try:
                return await op(client)
            except (TimeoutError, ClientError, BotoCoreError, OSError, aiohttp.ClientError) as exc:
                code = error_code(exc)
                if code in ("NoSuchBucket",) or (
                    what == "head bucket" and code in ("404", "NotFound")
                ):
                    raise S3SinkError(
                        f"S3 bucket {self.bucket!r} does not exist ({what} {where}"
                        f"{' at ' + self.endpoint_url if self.endpoint_url else ''}); "
                        f"create it first or pass create_bucket=True",
                        self.bucket,
                        key,
                    ) from exc
                if not retryable(exc) or attempt >= self.retries:
                    tries = attempt + 1
                    raise S3SinkError(
                        f"S3 {what} of {where} failed after {tries} "
                        f"attempt{'s' if tries != 1 else ''}: {describe(exc)}",
                        self.bucket,
                        key,
                    ) from exc
                attempt += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                SINK_WRITES.labels(self.kind, "retry").inc()
                # per try at debug: the final failure is raised, and its caller reports it
                log.debug(
                    "S3 %s of %s failed (%s); retry %d/%d in %.2fs",
                    what,
                    where,
                    describe(exc),
                    attempt,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self.create_bucket:
            return
        try:
            await self._call("head bucket", None, lambda c: c.head_bucket(Bucket=self.bucket))
        except S3SinkError as exc:
            if "does not exist" not in str(exc):
                raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}

            async def create(c: Any) -> None:
                try:
                    await c.create_bucket(**kwargs)
                except ClientError as err:  # someone else made it meanwhile
                    if error_code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

            await self._call("create bucket", None, create)
            log.info("created S3 bucket %s", self.bucket)
        self._bucket_ready = True

    async def _put(self, key: str, body: bytes, content_type: str) -> None:
        await self._ensure_bucket()
        await self._call(
            "put",
            key,
            lambda c: c.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ContentMD5=_md5_b64(body),
            ),
        )

    # ---- BaseSink ---------------------------------------------------------------------------
    async def write(self, trajectory: Trajectory) -> str:
        """per-task: returns once the object is stored, with its s3:// URL. jsonl-hourly:
        returns once the line is buffered (the URL of its partition); it is stored at the next
        flush, so a caller that commits input offsets must `await flush()` first."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self.layout == "per-task":
            key = self.key_for(trajectory)
            try:
                await self._put(key, render(trajectory), "application/json")
            except Exception:
                SINK_WRITES.labels(self.kind, "error").inc()
                raise
            SINK_WRITES.labels(self.kind, "ok").inc()
            return f"s3://{self.bucket}/{key}"
        partition = self.partition_for(trajectory)
        line = self.jsonl_line(trajectory)
        part = self._buffer[partition]
        previous = part.get(trajectory.key)
        self._buffered_bytes += len(line) - (len(previous) if previous else 0)
        part[trajectory.key] = line  # a redelivery within one batch replaces the older line
        if self._oldest is None:
            self._oldest = time.monotonic()
        self._start_timer()
        if self.buffered >= self.flush_count or self._buffered_bytes >= self.flush_bytes:
            await self.flush()
        return f"s3://{self.bucket}/{self._key(partition)}/"

    async def write_batch(self, trajectories: Sequence[Trajectory]) -> list[str]:
        """per-task: the puts run concurrently (a bounded number at once); the same key (task,
        or sample of a task) twice in one batch is written once, with the later trajectory."""
        if self.layout != "per-task":
            return [await self.write(t) for t in trajectories]
        last = {t.key: t for t in trajectories}
        slots = asyncio.Semaphore(PUT_CONCURRENCY)

        async def put(t: Trajectory) -> str:
            async with slots:
                return await self.write(t)

        urls = dict(zip(last, await asyncio.gather(*(put(t) for t in last.values()))))
        return [urls[t.key] for t in trajectories]

    async def check(self) -> None:
        """The bucket answers (or will be created: create_bucket)."""
        if self.create_bucket:
            await self._ensure_bucket()
            return
        await self._call("head bucket", None, lambda c: c.head_bucket(Bucket=self.bucket))

    async def write_artifact(
        self, trajectory: Trajectory, step_id: int, artifact: Artifact, data: bytes
    ) -> str:
        """One object per file under the task's prefix (<prefix>/<task_id>/step-<n>/<name>), in
        either layout; stored before the trajectory is."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        key = self._key(artifact_name(trajectory, step_id, artifact))
        await self._put(key, data, artifact.media_type)
        return f"s3://{self.bucket}/{key}"

    @property
    def buffered(self) -> int:
        """Trajectories waiting for the next jsonl flush."""
        return sum(len(p) for p in self._buffer.values())

    async def flush(self) -> list[str]:
        """Put every buffered partition as one new object each; returns the keys written.
        On failure what was not written stays buffered and the error is raised."""
        written: list[str] = []
        async with self._flush_lock:
            for partition in sorted(self._buffer):
                # detached before the put: a write() while it is in flight goes to a new buffer
                # (it used to land in this dict and be deleted with it, never written)
                lines = self._buffer.pop(partition)
                if not lines:
                    continue
                body = b"".join(lines[t] for t in sorted(lines))
                key = self._key(f"{partition}/part-{hashlib.sha256(body).hexdigest()[:24]}.jsonl")
                try:
                    await self._put(key, body, "application/x-ndjson")
                except Exception:
                    SINK_WRITES.labels(self.kind, "error").inc(len(lines))
                    again = self._buffer.setdefault(partition, {})
                    for task_id, line in lines.items():  # a newer line of a task wins
                        if task_id in again:
                            self._buffered_bytes -= len(line)
                        else:
                            again[task_id] = line
                    raise
                SINK_WRITES.labels(self.kind, "ok").inc(len(lines))
                self._buffered_bytes -= len(body)
                written.append(key)
            if not self._buffer:
                self._buffered_bytes, self._oldest = 0, None
        return written

    def _start_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_on_time())

    async def _flush_on_time(self) -> None:
        while self._buffer and not self._closed:
            age = time.monotonic() - (self._oldest or time.monotonic())
            await asyncio.sleep(max(0.0, self.flush_interval - age))
            if self._oldest is not None and time.monotonic() - self._oldest >= self.flush_interval:
                try:
                    await self.flush()
                except Exception as exc:  # kept buffered; the next round or close() retries
                    log.error("timed flush to %s failed: %s", self.destination, exc)
                    self._oldest = time.monotonic()

    async def close(self) -> None:
        """Flush what is buffered, then release the HTTP client. Raises if the flush fails
        (the client is released either way)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            if self._buffer:
                await self.flush()
        finally:
            if self._stack is not None:
                stack, self._stack, self._client = self._stack, None, None
                await stack.aclose()


def _md5_b64(body: bytes) -> str:
    # Content-MD5 makes S3 reject a body damaged in transit instead of storing it.
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
