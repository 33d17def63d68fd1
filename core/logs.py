"""Logging for every command: our loggers (adp.*) say what happened at INFO, libraries only
warn, and a library that repeats itself (aiokafka logs each failed reconnect, several a second,
while a broker is down) is shown once per minute with a count instead of flooding the log."""

from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RepeatCollapser(logging.Filter):
    """Pass the first record of each (logger, message template) from a library, then hold the
    same one back for `window` seconds; the next one after that says how many were held."""

    def __init__(self, window: float = 60.0):
        super().__init__()
        self.window = window
        self.seen: dict[tuple[str, str], list] = {}  # key -> [shown at, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "adp" or record.name.startswith("adp."):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:  # (no % added: safe with and without args)
            record.msg = (
                f"{record.msg} [{entry[1]} more like this in the last {now - entry[0]:.0f}s]"
            )
        if len(self.seen) > 1000:  # a library logging unique texts: forget the oldest
            self.seen.clear()
        self.seen[key] = [now, 0]
        return True


def setup(verbose: int = 0) -> None:
    """-v: debug for adp; -vv: also libraries (and no collapsing)."""
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.WARNING, format=FORMAT)
    logging.getLogger("adp").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose < 2:
        for handler in logging.getLogger().handlers:
            handler.addFilter(RepeatCollapser())
