"""Writing an export: rows per format, the train/validation split, dedup, and the files.

    chat      train.jsonl, validation.jsonl: {"messages", "tools"?} per line, exactly OpenAI's
              fine-tuning format (which TRL's SFTTrainer reads too); index.jsonl says which
              trajectory each line came from (a file no split pattern picks up)
    sharegpt  train.jsonl, validation.jsonl: {"conversations", "system", "tools", key, ...}
    parquet   train.parquet, validation.parquet: one row per conversation, nested messages and
              flat metadata columns (schema: PARQUET_SCHEMA)
    atif      train/<key>.json, validation/<key>.json: one ATIF v1.4 document per trajectory
    tokens    train.parquet, validation.parquet: one row per trajectory (per segment where a
              chat template rewrote history) of token ids, loss mask and logprobs, as the
              endpoint reported them (connectors/export/tokens.py; schema: tokens_schema)
and README.md, the dataset card, in every case. Files appear complete or not at all (written
under a temporary name, renamed at the end).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from adp.connectors.export.atif import atif_document
from adp.connectors.export.chat import (
    chat_problems,
    chat_row,
    conversations,
    sharegpt_problems,
    sharegpt_row,
)
from adp.connectors.export.passk import PassTable, reward
from adp.connectors.export.select import Dedup, models_of, providers_of, split_of
from adp.connectors.export.tokens import has_ids, row_record, token_sequences, tokens_schema
from adp.connectors.sinks.file import write_atomic
from adp.core.errors import BadInput
from adp.schemas import lineage
from adp.schemas.contracts import Trajectory
from adp.schemas.conversation import ConversationError, with_full_requests

FORMATS = ("chat", "sharegpt", "atif", "parquet", "tokens")
SPLITS = ("train", "validation")
PARQUET_BATCH = 1000


class ExportError(BadInput):
    """The export cannot be written (missing library, unwritable folder)."""


def parquet_schema():
    import pyarrow as pa

    call = pa.struct(
        [
            ("id", pa.string()),
            ("type", pa.string()),
            ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])),
        ]
    )
    message = pa.struct(
        [
            ("role", pa.string()),
            ("content", pa.string()),
            ("tool_calls", pa.list_(call)),
            ("tool_call_id", pa.string()),
        ]
    )
    return pa.schema(
        [
            ("key", pa.string()),
            ("task_id", pa.string()),
            ("task_type", pa.string()),
            ("sample_index", pa.int32()),
            ("segment", pa.int32()),
            ("split", pa.string()),
            ("provider", pa.string()),
            ("model", pa.string()),
            ("success", pa.bool_()),
            ("claimed_success", pa.bool_()),
            ("verdict", pa.string()),
            ("verifier", pa.string()),
            ("score", pa.float64()),
            ("num_steps", pa.int32()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("cost_usd", pa.float64()),
            ("finished_at", pa.timestamp("ms", tz="UTC")),
            ("messages", pa.list_(message)),
            ("tools", pa.string()),
        ]
    )


@dataclass
class TypeStats:
    trajectories: int = 0
    rows: int = 0
    success: int = 0
    verdicts: Counter = field(default_factory=Counter)


@dataclass
class Stats:
    by_type: dict[str, TypeStats] = field(default_factory=lambda: defaultdict(TypeStats))
    rows: Counter = field(default_factory=Counter)  # split -> rows written
    trajectories: Counter = field(default_factory=Counter)  # split -> trajectories
    left_out: Counter = field(default_factory=Counter)  # reason -> conversations
    filtered: Counter = field(default_factory=Counter)  # reason -> trajectories
    duplicates: int = 0
    models: Counter = field(default_factory=Counter)
    providers: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: int = 0  # trajectories with a cost
    # synthesized tasks (schemas/lineage.py): (generation, method) -> trajectories, and per
    # generation the successful ones; generation 0, method "hand-written": the others
    lineage: Counter = field(default_factory=Counter)
    generation_success: Counter = field(default_factory=Counter)

    @property
    def synthesized(self) -> bool:
        return any(generation for generation, _ in self.lineage)

    llm_calls: int = 0  # the agents' LLM calls
    token_calls: int = 0  # of them, with prompt and completion token ids
    drifts: int = 0  # tokens: calls whose prompt did not extend the previous call's
    passk: PassTable = field(default_factory=PassTable)

    @property
    def written(self) -> int:
        return sum(self.rows.values())


class _Jsonl:
    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.partial")
        self.fh = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)


class _Parquet:
    def __init__(self, path: Path, schema: Any = None):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ExportError(
                "--format parquet needs pyarrow: pip install 'agent-data-platform[export]'"
            ) from exc
        self.pa, self.path = pa, path
        self.tmp = path.with_name(f".{path.name}.partial")
        self.schema = schema or parquet_schema()
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.batch: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.batch.append(row)
        if len(self.batch) >= PARQUET_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.writer.write_table(self.pa.Table.from_pylist(self.batch, schema=self.schema))
            self.batch = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.path)


class Exporter:
    """Add trajectories one by one (in a stable order), then `close()` to finish the files."""

    def __init__(
        self,
        fmt: str,
        out: Path,
        validation: float = 0.1,
        dedup: bool = True,
        arguments: str = "string",
        version: str = "0",
        on_drift: str = "split",
    ) -> None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
        self.fmt, self.out, self.validation = fmt, Path(out), validation
        self.arguments, self.version, self.on_drift = arguments, version, on_drift
        self.dedup = Dedup() if dedup else None
        self.stats = Stats()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create {out}: {exc.strerror or exc}") from exc
        self.writers: dict[str, Any] = {}
        self.index: _Jsonl | None = _Jsonl(self.out / "index.jsonl") if fmt == "chat" else None

    def _writer(self, split: str) -> Any:
        if split not in self.writers:
            if self.fmt in ("parquet", "tokens"):
                schema = tokens_schema() if self.fmt == "tokens" else None
                self.writers[split] = _Parquet(self.out / f"{split}.parquet", schema)
            elif self.fmt in ("chat", "sharegpt"):
                self.writers[split] = _Jsonl(self.out / f"{split}.jsonl")
        return self.writers.get(split)

    def add(self, t: Trajectory) -> None:
        if self.fmt == "tokens":  # from the recorded ids: no request needs rebuilding
            self._add_tokens(t)
            return
        try:  # every request whole, once (conversations and ATIF read them)
            t = with_full_requests(t)
        except ConversationError:
            self.stats.left_out["an LLM request that cannot be rebuilt"] += 1
            return
        convs = conversations(t)
        if self.fmt == "atif":  # one document per trajectory, whatever its conversations
            if self.dedup is None or self.dedup.first(
                [[c.messages, c.tools] for c in convs] or t.key
            ):
                split = split_of(t.task_id, self.validation)
                self._count(t, split, 1)
                write_atomic(
                    self.out / split / f"{t.key}.json",
                    (
                        json.dumps(atif_document(t, self.version), indent=2, ensure_ascii=False)
                        + "\n"
                    ).encode("utf-8"),
                )
            return
        if not convs:
            self.stats.left_out["no LLM call to rebuild a conversation from"] += 1
        usable = []
        for conv in convs:
            problems = chat_problems(conv.messages, conv.tools)
            if self.fmt == "sharegpt" and not problems:
                problems = sharegpt_problems(sharegpt_row(conv))
            if problems:
                self.stats.left_out[_reason(problems[0])] += 1
            else:
                usable.append(conv)
        if not usable or (
            self.dedup is not None and not self.dedup.first([[c.messages, c.tools] for c in usable])
        ):
            return
        split = split_of(t.task_id, self.validation)
        self._count(t, split, len(usable))
        writer = self._writer(split)
        for conv in usable:
            row = self._row(t, conv, split)
            if self.index is not None:
                self.index.write({"split": split, "line": writer.count, **_meta(t, conv)})
            writer.write(row)

    def _add_tokens(self, t: Trajectory) -> None:
        """Rows of token ids, never deduplicated: identical samples of a task are what a
        group's advantage is computed over."""
        seqs = token_sequences(t, self.on_drift)
        self.stats.drifts += seqs.drifts
        if not seqs.complete:
            why = "no LLM call" if not seqs.calls else "LLM calls without token ids"
            self.stats.left_out[why] += 1
            return
        if not seqs.rows:
            self.stats.left_out["a chat template rewrote history (--on-drift drop)"] += 1
            return
        split = split_of(t.task_id, self.validation)
        self._count(t, split, len(seqs.rows))
        writer, score = self._writer(split), reward(t)
        for row in seqs.rows:
            writer.write(row_record(t, row, score))

    def _row(self, t: Trajectory, conv: Any, split: str) -> dict[str, Any]:
        if self.fmt == "chat":
            return chat_row(conv, self.arguments)
        if self.fmt == "sharegpt":
            return {**sharegpt_row(conv), **_meta(t, conv)}
        from datetime import datetime

        messages = [
            {
                "role": m["role"],
                "content": m["content"],
                "tool_calls": m.get("tool_calls"),
                "tool_call_id": m.get("tool_call_id"),
            }
            for m in conv.messages
        ]
        return {
            **_meta(t, conv),
            "split": split,
            "num_steps": len(t.steps),
            "prompt_tokens": t.metadata.prompt_tokens,
            "completion_tokens": t.metadata.completion_tokens,
            "cost_usd": t.metadata.cost_usd,
            "finished_at": datetime.fromtimestamp(t.metadata.finished_at, UTC),
            "messages": messages,
            "tools": json.dumps(conv.tools, ensure_ascii=False) if conv.tools else None,
        }

    def _count(self, t: Trajectory, split: str, rows: int) -> None:
        s = self.stats
        s.trajectories[split] += 1
        s.rows[split] += rows
        per = s.by_type[t.task_type]
        per.trajectories += 1
        per.rows += rows
        per.success += int(t.success)
        per.verdicts[t.verdict_status] += 1
        s.models.update(models_of(t))
        s.providers.update(providers_of(t))
        generation = lineage.generation_of(t)
        s.lineage[(generation, lineage.method_of(t) or "hand-written")] += 1
        s.generation_success[generation] += int(t.success)
        calls = [st.llm for st in t.steps if st.llm is not None]
        s.llm_calls += len(calls)
        s.token_calls += sum(has_ids(ex) for ex in calls)
        s.passk.add_trajectory(t)
        s.prompt_tokens += t.metadata.prompt_tokens
        s.completion_tokens += t.metadata.completion_tokens
        if t.metadata.cost_usd is not None:
            s.cost_usd += t.metadata.cost_usd
            s.priced += 1

    def close(self) -> Stats:
        for writer in self.writers.values():
            writer.close()
        if self.index is not None:
            self.index.close()
        if self.dedup is not None:
            self.stats.duplicates = self.dedup.dropped
        return self.stats

    def files(self) -> dict[str, str]:
        """split -> file (or folder) of that split, relative to the export folder."""
        ext = {"chat": "jsonl", "sharegpt": "jsonl", "parquet": "parquet", "tokens": "parquet"}.get(
            self.fmt
        )
        return {
            split: (f"{split}.{ext}" if ext else f"{split}/")
            for split in SPLITS
            if self.stats.trajectories[split]
        }


def _reason(problem: str) -> str:
    """A problem without its position and ids, to count alike ones together."""
    return re.sub(r"'[^']*'", "'...'", re.sub(r"^(message|turn) \d+: ", "", problem))


def _meta(t: Trajectory, conv: Any) -> dict[str, Any]:
    return {
        "key": t.key,
        "task_id": t.task_id,
        "task_type": t.task_type,
        "sample_index": t.sample_index,
        "segment": conv.segment,
        "provider": conv.provider,
        "model": conv.model,
        "success": t.success,
        "claimed_success": t.claimed,
        "verdict": t.verdict_status,
        "verifier": t.verification.verifier if t.verification else "",
        "score": t.verification.score if t.verification else None,
    }
