"""connectors/tasks_source.py without a broker: every kind of bad line gets a message naming its
line and what is wrong, and the good lines around it still come through."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adp.connectors import tasks_source
from adp.connectors.tasks_source import SourceItem, TaskFileError, read_tasks


def good(task_id: str, task_type: str = "code", **extra) -> str:
    return json.dumps(
        {"task_id": task_id, "task_type": task_type, "description": f"do {task_id}", **extra}
    )


def write(tmp_path: Path, *lines: str | bytes, name: str = "tasks.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(
        b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    )
    return path


def items(path: Path) -> list[SourceItem]:
    return list(read_tasks(path))


def errors(path: Path) -> dict[int, str]:
    return {i.line_no: i.error for i in items(path) if not i.ok}


def test_good_file_yields_tasks_in_order_with_line_numbers(tmp_path):
    path = write(
        tmp_path,
        good("a"),
        "",
        "   ",
        good("b", "web", constraints={"start_url": "x"}),
        good("c", "reasoning", max_steps=3, owner="me"),
    )
    got = items(path)
    assert [(i.line_no, i.task.task_id) for i in got] == [(1, "a"), (4, "b"), (5, "c")]
    assert all(i.ok and i.error is None for i in got)
    assert got[1].task.constraints == {"start_url": "x"}
    assert got[2].task.max_steps == 3 and got[2].task.metadata == {"owner": "me"}
    # byte ranges cover the file, for progress by bytes
    assert got[0].offset == 0 and got[-1].end == path.stat().st_size


def test_bad_line_battery_names_line_and_field_and_keeps_good_lines(tmp_path):
    path = write(
        tmp_path,
        good("ok-1"),  # 1
        '{"task_id": "x", "task_type": "code", "description": }',  # 2 malformed JSON
        good("x2", max_steps="many"),  # 3 wrong type
        good("x3", "quantum"),  # 4 unknown type
        '{"task_type": "code", "description": "no id"}',  # 5 missing task_id
        good("ok-1", description="again"),  # 6 duplicate
        b'{"task_id": "u", "task_type": "code", "description": "\xff\xfe"}',  # 7 not UTF-8
        "[1, 2]",  # 8 not an object
        good("x9", priority=11, expected_tools="python"),  # 9 two bad fields
        good("../etc", "web"),  # 10 unsafe id
        '{"task_id": "n", "task_type": "code", "description": "d", "x": NaN}',  # 11 NaN
        good("x12", metadata=[1]),  # 12 bad metadata
        good("ok-2", "web"),  # 13
    )
    got = items(path)
    assert [(i.line_no, i.task.task_id) for i in got if i.ok] == [(1, "ok-1"), (13, "ok-2")]
    assert all(i.error is not None for i in got if not i.ok)
    err = errors(path)
    assert set(err) == set(range(2, 13))
    assert err[2].startswith("line 2: invalid JSON: Expecting value (column ")
    assert err[3].startswith("line 3: max_steps: Input should be a valid integer")
    assert err[4] == "line 4: task_type: Input should be 'reasoning', 'code' or 'web'"
    assert err[5] == "line 5: task_id: missing (required)"
    assert err[6] == "line 6: duplicate task_id 'ok-1' (first on line 1)"
    bad_at = path.read_bytes().splitlines()[6].index(b"\xff")
    line7_offset = next(i.offset for i in got if i.line_no == 7)
    assert err[7] == (
        f"line 7: not valid UTF-8 at byte {bad_at} of the line "
        f"(byte {line7_offset + bad_at} of the file): invalid start byte"
    )
    assert err[8] == "line 8: a task line must be a JSON object, got an array"
    assert "priority: Input should be less than or equal to 10" in err[9]
    assert "expected_tools: Input should be a valid list" in err[9]
    assert err[10].startswith("line 10: task_id: must not contain '/'")
    assert err[11] == "line 11: invalid JSON: NaN is not valid JSON"
    assert err[12] == "line 12: metadata: Input should be a valid dictionary"


def test_duplicate_keeps_first_occurrence(tmp_path):
    path = write(
        tmp_path,
        good("d", description="first"),
        good("e"),
        good("d", description="second"),
        good("d", "web"),
    )
    got = items(path)
    firsts = [i.task for i in got if i.ok]
    assert [t.task_id for t in firsts] == ["d", "e"] and firsts[0].description == "first"
    assert errors(path) == {
        3: "line 3: duplicate task_id 'd' (first on line 1)",
        4: "line 4: duplicate task_id 'd' (first on line 1)",
    }


def test_a_bad_line_does_not_claim_its_task_id(tmp_path):
    path = write(tmp_path, good("z", max_steps=0), good("z"))
    got = items(path)
    assert got[0].error.startswith("line 1: max_steps:")
    assert got[1].ok and got[1].task.task_id == "z"


def test_ten_megabyte_description_is_one_good_line(tmp_path):
    big = "x" * (10 * 1024 * 1024)
    path = write(tmp_path, good("big", description=big), good("after"))
    got = items(path)
    assert [i.task.task_id for i in got] == ["big", "after"]
    assert got[0].task.description == big


def test_line_over_the_limit_is_rejected_without_stopping(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks_source, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(tasks_source, "_CHUNK", 64)
    path = write(tmp_path, good("a"), good("long", description="y" * 5000), good("b"))
    got = items(path)
    assert [i.task.task_id for i in got if i.ok] == ["a", "b"]
    bad = [i for i in got if not i.ok]
    assert len(bad) == 1 and bad[0].line_no == 2 and "over the" in bad[0].error
    assert got[-1].end == path.stat().st_size


def test_last_line_without_newline_and_crlf_and_bom(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good("a").encode() + b"\r\n" + good("b").encode())
    assert [i.task.task_id for i in items(path)] == ["a", "b"]


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n\r\n\t\n"])
def test_empty_file_is_one_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    got = items(path)
    assert len(got) == 1 and not got[0].ok and got[0].line_no == 0
    assert "contains no tasks" in got[0].error and "empty.jsonl" in got[0].error


def test_missing_file_directory_and_unreadable_raise_clearly(tmp_path):
    with pytest.raises(TaskFileError, match=r"tasks file not found: .*nope.jsonl"):
        read_tasks(tmp_path / "nope.jsonl")  # raised by the call, not at first iteration
    with pytest.raises(TaskFileError, match="is a directory"):
        read_tasks(tmp_path)
    locked = write(tmp_path, good("a"), name="locked.jsonl")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # running as root: permissions do not apply
            pytest.skip("cannot make a file unreadable as this user")
        with pytest.raises(TaskFileError, match="not readable"):
            read_tasks(locked)
    finally:
        locked.chmod(0o644)


def test_parse_line_column_in_json_error():
    msg = tasks_source.parse_line(b'{"task_id": "a",, }')
    assert msg == "invalid JSON: Expecting property name enclosed in double quotes (column 17)"


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    deep = (
        '{"task_id": "d", "task_type": "code", "description": "x", "c": '
        + "[" * 100000
        + "]" * 100000
        + "}"
    )
    path = write(tmp_path, deep, good("fine"))
    got = items(path)
    assert not got[0].ok and got[0].error.startswith("line 1: invalid JSON")
    assert got[1].ok
