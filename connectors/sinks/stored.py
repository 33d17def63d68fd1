"""Reading back what the sinks stored: the trajectory objects under a folder or an S3 prefix.

    store = open_store("output/trajectories")        # or "s3://bucket/prefix"
    for obj in await store.entries():                 # one listing: names, versions, times
        docs = parse_documents(obj.name, await store.read(obj.name))
    await store.close()

`entries()` is cheap (a folder scan or an S3 LIST, no object is opened), and an object's
`version` changes whenever its content may have (mtime and size of a file; the ETag of an S3
object), so a reader can keep what it learnt about an object until its version moves.
Both sink layouts read back: one `<task_id>.json` per trajectory, and the S3 sink's
`jsonl-hourly` parts (`.jsonl`, one trajectory per line). Temporary files of the atomic file
sink (`.<name>.tmp`), the files steps wrote (`<task_id>/step-<n>/...`, read with `read()` by
name) and anything else are skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adp.connectors.sinks import s3, s3_client
from adp.connectors.sinks.base import is_artifact_name

SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class StoredObject:
    name: str  # relative to the store's root: "<task_id>.json" or "dt=…/hour=…/part-….jsonl"
    version: str  # changes when the object may have changed
    modified: float  # unix seconds
    size: int


class TrajectoryStore(Protocol):
    location: str

    async def entries(self) -> list[StoredObject]: ...
    async def read(self, name: str) -> bytes: ...
    async def close(self) -> None: ...


def _wanted(name: str) -> bool:
    """A trajectory object: .json/.jsonl, not a temp file, not a file a step wrote."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(SUFFIXES) and not base.startswith(".") and not is_artifact_name(name)


class FileStore:
    """A folder the file sink (or `adp replay --out DIR`) writes.

    Listing stats every file, which takes a while for tens of thousands. The sinks only ever
    add, replace (rename over) or remove files, and each of those changes its folder's mtime,
    so while no folder's mtime moved the previous listing is returned as is; a full listing
    still runs every `full_every` seconds, for edits made in place by hand."""

    def __init__(self, root: str | Path, full_every: float = 60.0) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.full_every = full_every
        self._listed: list[StoredObject] | None = None
        self._folders: dict[str, int] = {}  # folder -> its mtime_ns at the last full listing
        self._listed_at = 0.0

    async def entries(self) -> list[StoredObject]:
        return await asyncio.to_thread(self._entries)

    def _entries(self) -> list[StoredObject]:
        if (
            self._listed is not None
            and time.monotonic() - self._listed_at < self.full_every
            and all(_mtime(folder) == mtime for folder, mtime in self._folders.items())
        ):
            return self._listed
        folders: dict[str, int] = {}
        listed = self._scan(folders)
        self._listed, self._folders, self._listed_at = listed, folders, time.monotonic()
        return listed

    def _scan(self, folders: dict[str, int]) -> list[StoredObject]:
        found: list[StoredObject] = []
        folders[str(self.root)] = _mtime(str(self.root))
        if not self.root.is_dir():
            return found
        for folder, dirs, files in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            # hidden folders and the step folders of artifacts (<task_id>/step-<n>/) hold no
            # trajectories: not walked
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and not (rel != "." and is_artifact_name(f"{rel}/{d}/file"))
            ]
            for d in dirs:  # stat'ed before os.walk lists it: a later change is noticed
                folders[os.path.join(folder, d)] = _mtime(os.path.join(folder, d))
            for file in files:
                name = file if rel == "." else f"{rel}/{file}"
                if not _wanted(name):
                    continue
                try:
                    st = os.stat(os.path.join(folder, file))
                except FileNotFoundError:  # replaced or removed while we listed
                    continue
                found.append(
                    StoredObject(
                        name.replace(os.sep, "/"),
                        f"{st.st_mtime_ns}:{st.st_size}",
                        st.st_mtime,
                        st.st_size,
                    )
                )
        return found

    async def read(self, name: str) -> bytes:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):  # a name is never a way out of root
            raise FileNotFoundError(name)
        return await asyncio.to_thread(path.read_bytes)

    async def close(self) -> None:
        pass


class S3Store:
    """An S3 prefix the S3 sink writes (either layout); endpoint and credentials as the sink's."""

    def __init__(
        self, destination: str, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        self.location = destination
        self.bucket, self.prefix = s3.parse_destination(destination)
        self.endpoint_url = endpoint_url or s3_client.default_endpoint()
        self.region = region or s3_client.default_region()
        self._context: Any = None
        self._client: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            # the listing and reads are idempotent: botocore's own retries are fine here
            self._context = s3_client.create_client(self.endpoint_url, self.region, attempts=4)
            self._client = await self._context.__aenter__()
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def entries(self) -> list[StoredObject]:
        client = await self._s3()
        found: list[StoredObject] = []
        start = f"{self.prefix}/" if self.prefix else ""
        async for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(start) :]
                if _wanted(name):
                    found.append(
                        StoredObject(
                            name,
                            obj.get("ETag", "").strip('"'),
                            obj["LastModified"].timestamp(),
                            obj.get("Size", 0),
                        )
                    )
        return found

    async def read(self, name: str) -> bytes:
        client = await self._s3()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self._key(name))
        except client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"{self.location}/{name}") from exc
        async with response["Body"] as body:
            return await body.read()

    async def close(self) -> None:
        if self._context is not None:
            context, self._context, self._client = self._context, None, None
            await context.__aexit__(None, None, None)


def _mtime(folder: str) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:  # gone (or not there yet): -1 until it is
        return -1


def open_store(location: str | Path) -> FileStore | S3Store:
    """The store behind a sink destination: a folder, or s3://bucket/prefix."""
    text = str(location)
    return S3Store(text) if text.startswith("s3://") else FileStore(text)


def parse_documents(name: str, data: bytes) -> list[dict]:
    """The trajectories in one stored object: one for `.json`, one per line for `.jsonl`.
    Raises ValueError naming the object (and line) that is not a trajectory document."""
    if name.endswith(".jsonl"):
        docs = []
        for number, line in enumerate(data.splitlines(), 1):
            if line.strip():
                docs.append(_document(line, f"{name} line {number}"))
        return docs
    return [_document(data, name)]


def _document(data: bytes, where: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or "task_id" not in doc:
        raise ValueError(f"{where}: not a trajectory (no task_id)")
    return doc
