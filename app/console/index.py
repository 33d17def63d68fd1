"""The console's index of stored trajectories: answers a page of a filtered, searched list
without opening the files.

Built incrementally from the store's listing (names + versions, one folder scan or S3 LIST)
and a small summary per object (type, success, verdict, step count, description and answer
for the text search). An object is opened only when it is new or its version moved; the
summaries are cached on disk, so a restarted console reads only what changed meanwhile.
Newest objects are summarised first, so the first page is ready long before a large store is.

One entry per trajectory key (the task_id, or "<task_id>/<i>" for sample i of a task run k
times): where a key appears in several objects (the S3 jsonl layout after a redelivery), the
latest finished_at wins, as the S3 sink documents for its readers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adp.connectors.sinks.file import write_atomic
from adp.connectors.sinks.stored import StoredObject, TrajectoryStore, parse_documents
from adp.schemas import lineage
from adp.schemas.contracts import sample_key, verdict_status

log = logging.getLogger(__name__)

TEXT_LIMIT = 2000  # characters of description / answer kept for the search
BATCH = 64  # objects summarised between two looks at the stop flag
REBUILD_EVERY = 1.0  # seconds: how often a long build republishes the list
CACHE_FORMAT = 3
VERDICTS = ("passed", "failed", "error", "unverified")


def summarise(doc: dict, name: str, line: int) -> dict:
    """What the list shows and filters on, from one trajectory document."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    steps = doc.get("steps") if isinstance(doc.get("steps"), list) else []
    model = next(
        (
            s["llm"].get("model")
            for s in steps
            if isinstance(s, dict) and isinstance(s.get("llm"), dict)
        ),
        None,
    )
    task_id = str(doc.get("task_id"))
    sample = doc.get("sample_index") if isinstance(doc.get("sample_index"), int) else 0
    claimed = doc.get("claimed_success")
    summary = {
        "key": _key(doc),
        "task_id": task_id,
        "sample_index": sample,
        "task_type": str(doc.get("task_type") or ""),
        "success": bool(doc.get("success")),
        "claimed": bool(doc.get("success")) if claimed is None else bool(claimed),
        "verdict": verdict_status(doc.get("verification")),
        "steps": len(steps),
        "duration": _number(doc.get("total_duration")),
        "finished_at": _number(meta.get("finished_at")),
        "error_type": meta.get("error_type"),
        "tokens": int(_number(meta.get("prompt_tokens")) + _number(meta.get("completion_tokens"))),
        "cost_usd": meta.get("cost_usd")
        if isinstance(meta.get("cost_usd"), (int, float))
        else None,
        "model": model,
        "description": _cut(doc.get("description")),
        "final_result": _cut(doc.get("final_result")),
        "object": name,
        "line": line,
        # synthesized tasks (adp synthesize): where they came from
        "generation": lineage.generation_of(doc),
        "method": lineage.method_of(doc),
        "parents": lineage.parent_ids(doc),
    }
    return _with_text(summary)


def _with_text(summary: dict) -> dict:
    """Adds the lowercased text a search looks in (kept in memory only, never sent or cached)."""
    summary["_text"] = "\n".join(
        (summary["task_id"], summary["description"], summary["final_result"])
    ).lower()
    return summary


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:TEXT_LIMIT]


class TrajectoryIndex:
    def __init__(
        self,
        store: TrajectoryStore,
        cache_file: Path | None = None,
        on_change: Callable[[dict], None] | None = None,
    ) -> None:
        self.store = store
        self.cache_file = cache_file
        self.on_change = on_change
        self.listed: dict[str, StoredObject] = {}
        # object name -> (version, summaries of the trajectories in it)
        self.objects: dict[str, tuple[str, list[dict]]] = {}
        self.by_key: dict[str, dict] = {}  # trajectory key -> its summary
        self.by_task: dict[str, list[dict]] = {}  # task_id -> its samples' summaries
        self.children: dict[str, list[str]] = {}  # task_id -> tasks synthesized from it
        self.ordered: list[dict] = []  # newest finished first
        self.indexed = 0  # listed objects whose current version is summarised
        self.reads = 0  # objects opened (tests check pages open none)
        self.list_error: str | None = None  # the store could not be listed
        self.problems: dict[str, str] = {}  # object name -> why it is not in the list
        self.generation = 0  # moves whenever the list's content changes
        self._dirty_cache = False
        self._saved_at = 0.0

    # ---- building ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, every: float = 2.0) -> None:
        """Keep the index current until `stop`; a failing store is reported and retried."""
        await self.load_cache()
        while not stop.is_set():
            try:
                await self.refresh(stop)
            except Exception as exc:  # S3 down, no permission: say so, keep the last index
                error = f"cannot list {self.store.location}: {exc}"
                if error != self.list_error:
                    log.warning("trajectory index: %s", error)
                    self._set_list_error(error)
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass
        await self.save_cache(force=True)

    async def refresh(self, stop: asyncio.Event | None = None) -> None:
        """One pass: list the store, forget removed objects, summarise new or changed ones
        (newest first, in batches so pages get fresh results along the way)."""
        listed = {o.name: o for o in await self.store.entries()}
        self.listed = listed
        self._set_list_error(None)
        gone = [n for n in self.objects if n not in listed]
        for name in gone:
            del self.objects[name]
            self.problems.pop(name, None)
            self._dirty_cache = True
        todo = sorted(
            (o for o in listed.values() if self.objects.get(o.name, ("",))[0] != o.version),
            key=lambda o: o.modified,
            reverse=True,
        )
        if gone and not todo:
            self._rebuild()
        shown = time.monotonic()
        for start in range(0, len(todo), BATCH):
            if stop is not None and stop.is_set():
                break
            for obj in todo[start : start + BATCH]:
                await self._summarise(obj)
            # pages see progress along a long first build, without a rebuild per batch
            if time.monotonic() - shown > REBUILD_EVERY or start + BATCH >= len(todo):
                self._rebuild()
                shown = time.monotonic()
        await self.save_cache()

    async def _summarise(self, obj: StoredObject) -> None:
        self.reads += 1
        try:
            data = await self.store.read(obj.name)
            docs = await asyncio.to_thread(parse_documents, obj.name, data)
        except FileNotFoundError:  # removed since the listing; the next one forgets it
            self.objects.pop(obj.name, None)
            return
        except ValueError as exc:  # not a trajectory: reported on the page, not listed
            self.objects[obj.name] = (obj.version, [])
            self.problems[obj.name] = str(exc)
            log.warning("trajectory index: %s", exc)
            return
        self.objects[obj.name] = (
            obj.version,
            [summarise(d, obj.name, i) for i, d in enumerate(docs)],
        )
        self.problems.pop(obj.name, None)
        self._dirty_cache = True

    def _rebuild(self) -> None:
        by_key: dict[str, dict] = {}
        for _version, summaries in self.objects.values():
            for s in summaries:
                known = by_key.get(s["key"])
                if known is None or (s["finished_at"], s["object"]) > (
                    known["finished_at"],
                    known["object"],
                ):
                    by_key[s["key"]] = s
        self.by_key = by_key
        self._index_lineage()
        self.indexed = sum(
            1
            for name, (version, _) in self.objects.items()
            if name in self.listed and self.listed[name].version == version
        )
        self.ordered = sorted(
            by_key.values(), key=lambda s: (s["finished_at"], s["key"]), reverse=True
        )
        self.generation += 1
        if self.on_change is not None:
            self.on_change(self.state())

    def _index_lineage(self) -> None:
        by_task: dict[str, list[dict]] = {}
        children: dict[str, set[str]] = {}
        for s in self.by_key.values():
            by_task.setdefault(s["task_id"], []).append(s)
            for parent in s.get("parents") or ():
                children.setdefault(parent, set()).add(s["task_id"])
        self.by_task = by_task
        self.children = {parent: sorted(ids) for parent, ids in children.items()}

    def lineage(self, task_id: str) -> dict | None:
        """A task's parents and children among the stored trajectories (opens no object);
        None when no trajectory of it is stored."""
        samples = self.by_task.get(task_id)
        if not samples:
            return None
        first = min(samples, key=lambda s: s["sample_index"])
        return {
            "task_id": task_id,
            "generation": first.get("generation", 0),
            "method": first.get("method"),
            "parents": [self._related(p) for p in first.get("parents") or ()],
            "children": [self._related(c) for c in self.children.get(task_id, ())],
        }

    def _related(self, task_id: str) -> dict:
        samples = self.by_task.get(task_id) or []
        first = min(samples, key=lambda s: s["sample_index"]) if samples else None
        return {
            "task_id": task_id,
            "key": first["key"] if first else None,  # None: no trajectory of it stored
            "generation": first.get("generation") if first else None,
            "method": first.get("method") if first else None,
            "passed": sum(1 for s in samples if s["success"]),
            "samples": len(samples),
        }

    def _set_list_error(self, error: str | None) -> None:
        if error != self.list_error:
            self.list_error = error
            if self.on_change is not None:
                self.on_change(self.state())

    def state(self) -> dict:
        problems = [why for _name, why in sorted(self.problems.items())[:3]]
        if len(self.problems) > 3:
            problems.append(f"and {len(self.problems) - 3} more unreadable objects")
        return {
            "trajectories": len(self.by_key),
            "objects": len(self.listed),
            "indexed": self.indexed,
            "generation": self.generation,
            "error": self.list_error,
            "problems": problems,
            "location": self.store.location,
        }

    # ---- answering ----------------------------------------------------------------------------
    def page(
        self,
        task_type: str | None = None,
        success: bool | None = None,
        verified: str | None = None,
        text: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict:
        """One page of the newest-first list, filtered; opens no object."""
        needle = (text or "").strip().lower()
        matched = [
            s
            for s in self.ordered
            if (not task_type or s["task_type"] == task_type)
            and (success is None or s["success"] == success)
            and (not verified or s["verdict"] == verified)
            and (not needle or needle in s["_text"])
        ]
        offset, limit = max(0, offset), max(1, min(limit, 500))
        items = [
            {
                k: (v[:240] if k in ("description", "final_result") else v)
                for k, v in s.items()
                if k != "_text"
            }
            for s in matched[offset : offset + limit]
        ]
        return {
            "items": items,
            "total": len(matched),
            "offset": offset,
            "limit": limit,
            **self.state(),
        }

    async def document(self, key: str) -> dict | None:
        """The full trajectory document behind a key (one object read), or None."""
        summary = self.by_key.get(key)
        if summary is None:
            return None
        self.reads += 1
        try:
            data = await self.store.read(summary["object"])
            docs = await asyncio.to_thread(parse_documents, summary["object"], data)
        except (FileNotFoundError, ValueError):
            return None
        if summary["line"] < len(docs) and _key(docs[summary["line"]]) == key:
            return docs[summary["line"]]
        # the object changed since it was indexed: find the key in what is there now
        return next((d for d in reversed(docs) if _key(d) == key), None)

    # ---- the summary cache on disk ---------------------------------------------------------------
    async def load_cache(self) -> None:
        """Start from the summaries a previous run saved (parsed off the event loop)."""
        if self.cache_file is None or not self.cache_file.exists():
            return
        try:
            data = await asyncio.to_thread(lambda: json.loads(self.cache_file.read_bytes()))
            if data.get("format") == CACHE_FORMAT and data.get("location") == self.store.location:
                self.objects = {
                    name: (entry["version"], [_with_text(s) for s in entry["summaries"]])
                    for name, entry in data["objects"].items()
                }
                self.problems = {
                    name: entry["problem"]
                    for name, entry in data["objects"].items()
                    if entry.get("problem")
                }
                self._rebuild()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the console's index cache %s: %s", self.cache_file, exc)

    async def save_cache(self, force: bool = False, every: float = 15.0) -> None:
        """Write the summaries for the next run, at most every `every` seconds (in a thread:
        a large index is megabytes of JSON)."""
        if self.cache_file is None or not self._dirty_cache:
            return
        if not force and time.monotonic() - self._saved_at < every:
            return
        # a snapshot taken here, on the loop: summaries are replaced, never changed in place
        objects = {
            name: {"version": v, "summaries": s, "problem": self.problems.get(name)}
            for name, (v, s) in self.objects.items()
        }
        self._saved_at, self._dirty_cache = time.monotonic(), False
        try:
            await asyncio.to_thread(self._write_cache, objects)
        except (OSError, ValueError) as exc:
            log.warning("cannot save the console's index cache %s: %s", self.cache_file, exc)

    def _write_cache(self, objects: dict) -> None:
        for entry in objects.values():
            entry["summaries"] = [_without_text(x) for x in entry["summaries"]]
        body = json.dumps(
            {"format": CACHE_FORMAT, "location": self.store.location, "objects": objects},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        write_atomic(self.cache_file, body.encode())


def _without_text(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "_text"}


def cache_file_for(home: Path, location: str) -> Path:
    """Where the summary cache of one store lives: one file per location under ADP_HOME."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return home / "console" / f"index-{digest}.json"


def _key(doc: dict) -> str:
    sample = doc.get("sample_index") if isinstance(doc.get("sample_index"), int) else 0
    return sample_key(str(doc.get("task_id")), sample)
