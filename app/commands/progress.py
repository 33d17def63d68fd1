"""Progress bars of long commands, on stderr and only when it is a terminal (pipes and logs
get the summary line alone)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any


def counting_bar(label: str):
    """A progress bar counting trajectories as `adp export` / `adp verify` read them (the total
    is unknown until the source is read): (context, tick), or (a null context, None) when
    stderr is not a terminal."""
    if not sys.stderr.isatty():
        return nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)
    return bar, lambda: bar.advance(task)


def ranged_bar(label: str, unit: str) -> tuple[Any, Callable[[int, int], None]] | tuple[None, None]:
    """A bar of work whose total is known once it starts (`update(done, total)`), with elapsed
    and remaining time: (bar, update), or (None, None) when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(f"[bold]{label}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task_id = bar.add_task(unit, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task_id, completed=done, total=total)

    return bar, update
