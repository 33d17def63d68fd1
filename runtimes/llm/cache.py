"""An on-disk cache of raw LLM responses (SQLite, WAL mode: safe across processes on one host).

The key is an exact fingerprint: sha256 of the canonical JSON of (provider, model, messages,
tools, sampling params). Only LLM responses are ever stored; tools always run for real.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from adp.core.metrics import CACHE_HITS, CACHE_MISSES
from adp.core.settings import settings


def default_path() -> Path:
    return settings().home / "llm-cache.sqlite3"


def fingerprint(
    provider: str, model: str, messages: Any, tools: Any, params: dict[str, Any]
) -> str:
    canonical = json.dumps(
        {
            "provider": provider,
            "model": model,
            "messages": messages,
            "tools": tools,
            "params": params,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class LLMCache:
    """get/put of raw response dicts by fingerprint; `hits`/`misses` count this instance."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, provider TEXT, "
            "model TEXT, response TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            self.misses += 1
            CACHE_MISSES.inc()
            return None
        self.hits += 1
        CACHE_HITS.inc()
        return json.loads(row[0])

    def put(self, key: str, provider: str, model: str, response: dict[str, Any]) -> None:
        text = json.dumps(response, ensure_ascii=False, default=str)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, provider, model, response, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, provider, model, text, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"
