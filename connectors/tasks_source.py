"""The tasks.jsonl source: read a file of tasks line by line and validate each one.

One line is one JSON object (see adp.schemas.contracts.Task). The file is read in binary, one line
at a time, so a file of any size streams through in constant memory (a single line may be large: a
10 MB description is fine; a line over MAX_LINE_BYTES is rejected without being held in memory).

`read_tasks(path)` yields one SourceItem per non-blank line, in file order, numbered from 1:
either the validated Task or an error message that names the line and what is wrong with it:

    line 3: invalid JSON: Expecting ',' delimiter (column 17)
    line 5: not valid UTF-8 at byte 12 of the line (byte 4108 of the file): invalid start byte
    line 7: task_type: Input should be 'reasoning', 'code' or 'web'
    line 9: task_id: missing (required)
    line 12: duplicate task_id 'x' (first on line 3)

A file without any task (empty, or only blank lines) yields a single error item with line 0.
A missing or unreadable file, or a directory, raises TaskFileError before anything is yielded.
Bad lines never stop the stream: the lines after them are still read and validated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adp.core.errors import BadInput
from adp.schemas.contracts import Task

# Bigger than any task the broker accepts (32 MiB per record batch), so a longer line cannot be
# sent anyway; it is skipped in chunks instead of read into memory.
MAX_LINE_BYTES = 32 * 1024 * 1024
_CHUNK = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class TaskFileError(BadInput):
    """The tasks file itself cannot be read (missing, a directory, no permission, I/O error)."""


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One non-blank line of the file: a Task, or an error message naming the line.

    `offset`/`end` are the line's byte range in the file (for progress by bytes)."""

    line_no: int
    task: Task | None = None
    error: str | None = None
    offset: int = 0
    end: int = 0

    @property
    def ok(self) -> bool:
        return self.task is not None


def _open(path: Path):
    if not path.exists():
        raise TaskFileError(f"tasks file not found: {path}")
    if path.is_dir():
        raise TaskFileError(f"tasks file is a directory, not a file: {path}")
    try:
        return path.open("rb")
    except PermissionError:
        raise TaskFileError(f"tasks file is not readable (permission denied): {path}") from None
    except OSError as exc:
        raise TaskFileError(f"cannot open tasks file {path}: {exc.strerror or exc}") from None


def _lines(fh, limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(offset, length, line-or-None) for each physical line; None means 'too long, skipped'."""
    offset = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            length = len(line)
            while True:  # skip the rest of this line without keeping it
                chunk = fh.readline(_CHUNK)
                length += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield offset, length, None
            offset += length
            continue
        yield offset, len(line), line
        offset += len(line)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "task"
        if err.get("type") == "missing":
            parts.append(f"{where}: missing (required)")
            continue
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_line(raw: bytes, line_no: int = 1, file_offset: int = 0) -> Task | str:
    """Validate one line's bytes: the Task, or an error message (without the 'line N: ')."""
    if line_no == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
        file_offset += len(_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"not valid UTF-8 at byte {exc.start} of the line "
            f"(byte {file_offset + exc.start} of the file): {exc.reason}"
        )
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except ValueError as exc:  # NaN / Infinity, or an integer too long to convert
        return f"invalid JSON: {exc}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    if not isinstance(obj, dict):
        return f"a task line must be a JSON object, got {_json_kind(obj)}"
    if "metadata" in obj and obj["metadata"] is not None and not isinstance(obj["metadata"], dict):
        return "metadata: Input should be a valid dictionary"
    if "sample_index" in obj:
        return "sample_index: set by adp produce for each sample (ask for k with `samples`)"
    try:
        return Task.from_line(obj)
    except ValidationError as exc:
        return _field_errors(exc)
    except (ValueError, TypeError) as exc:
        return str(exc)


def _json_kind(obj: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(obj), type(obj).__name__)


def read_tasks(
    path: str | os.PathLike[str], max_line_bytes: int | None = None
) -> Iterator[SourceItem]:
    """Stream the file's tasks and errors, in order. See the module docstring.
    `max_line_bytes`: longer lines are rejected (default MAX_LINE_BYTES).

    Raises TaskFileError from the call itself if the file cannot be opened, or while iterating
    if reading fails midway (an I/O error)."""
    path = Path(path)
    # opened now, so TaskFileError comes from this call
    return _items(path, _open(path), max_line_bytes or MAX_LINE_BYTES)


def read_stream(
    fh, name: str = "<stdin>", max_line_bytes: int | None = None
) -> Iterator[SourceItem]:
    """As read_tasks, from an open binary stream (standard input); `name` in messages."""
    return _items(name, fh, max_line_bytes or MAX_LINE_BYTES)


def _items(path: Path | str, fh, limit: int) -> Iterator[SourceItem]:
    seen: dict[str, int] = {}  # task_id -> the line it was first on
    any_content = False
    line_no = 0
    with fh:
        try:
            for offset, length, raw in _lines(fh, limit):
                line_no += 1
                if raw is not None and not raw.strip():
                    continue
                any_content = True
                yield _item(line_no, offset, offset + length, raw, limit, seen)
        except OSError as exc:
            raise TaskFileError(
                f"error reading {path} after line {line_no}: {exc.strerror or exc}"
            ) from None
    if not any_content:
        yield SourceItem(
            0,
            error=f"{path} contains no tasks (the file is empty"
            + (")" if line_no == 0 else " apart from blank lines)"),
        )


def _item(
    line_no: int, offset: int, end: int, raw: bytes | None, limit: int, seen: dict[str, int]
) -> SourceItem:
    """One non-blank line (None: too long) as its Task or its error; a new task_id goes into
    `seen`."""
    if raw is None:
        error = f"line is {end - offset} bytes, over the {limit / (1024 * 1024):.3g} MiB limit"
        return SourceItem(line_no, error=f"line {line_no}: {error}", offset=offset, end=end)
    result = parse_line(raw, line_no, offset)
    if isinstance(result, str):
        return SourceItem(line_no, error=f"line {line_no}: {result}", offset=offset, end=end)
    first = seen.get(result.task_id)
    if first is not None:
        error = f"duplicate task_id {result.task_id!r} (first on line {first})"
        return SourceItem(line_no, error=f"line {line_no}: {error}", offset=offset, end=end)
    seen[result.task_id] = line_no
    return SourceItem(line_no, task=result, offset=offset, end=end)
