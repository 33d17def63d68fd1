"""core/logs.py: a library repeating the same error (aiokafka while a broker is down) is shown
once per window with a count; our own loggers are never held back."""

from __future__ import annotations

import logging

from adp.core.logs import RepeatCollapser


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_are_collapsed_per_window_with_a_count(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("adp.core.logs.time.monotonic", lambda: now[0])
    f = RepeatCollapser(window=60)
    msg = "Unable connect to node with id %s: %s"
    assert f.filter(record("aiokafka", msg, 1, "refused"))
    assert not any(f.filter(record("aiokafka", msg, 1, "refused")) for _ in range(50))
    assert f.filter(record("aiokafka.consumer", "other %s", 1))  # another message: shown
    now[0] += 61
    again = record("aiokafka", msg, 1, "refused")
    assert f.filter(again)
    assert again.getMessage() == (
        "Unable connect to node with id 1: refused [50 more like this in the last 61s]"
    )
    plain = record("faust", "100% done")  # no args: the text is used as it is
    assert f.filter(plain) and not f.filter(record("faust", "100% done"))
    now[0] += 61
    plain = record("faust", "100% done")
    assert f.filter(plain) and plain.getMessage() == "100% done [1 more like this in the last 61s]"


def test_our_own_loggers_always_pass():
    f = RepeatCollapser(window=60)
    assert all(
        f.filter(record("adp.streams.runtime.worker", "task %s finished", 1)) for _ in range(5)
    )
