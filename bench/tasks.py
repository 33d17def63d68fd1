"""Code tasks for the runtime and end-to-end parts, produced with `adp produce`."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.core import ADP, Bench


def produce_tasks(bench: Bench, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}-{i:06d}" for i in range(n)]
    path = bench.work / f"{prefix}.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": t,
                    "task_type": "code",
                    "description": f"Print the number {i}.",
                    "max_steps": 4,
                }
            )
            + "\n"
            for i, t in enumerate(ids)
        )
    )
    env = {**bench.children.env}
    subprocess.run(
        [*ADP, "produce", "--quiet", str(path)], env=env, check=True, stdout=subprocess.DEVNULL
    )
    return ids


def stub_replies(base_url: str) -> int:
    """Chat replies the stub has sent so far."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as resp:
        return int(json.loads(resp.read()).get("replies", 0))


def count_files(out: Path, prefix: str) -> int:
    return sum(1 for _ in out.glob(f"{prefix}-*.json")) if out.exists() else 0


def steady_rate(xs: list[float], ys: list[float], lo: float, hi: float) -> float:
    """Slope of a cumulative count between the moments it crossed lo and hi (fractions of its
    final value): the steady state, without start-up and the tail."""
    final = ys[-1]
    t_lo = next(x for x, y in zip(xs, ys) if y >= lo * final)
    i_hi = next(i for i, y in enumerate(ys) if y >= hi * final)
    t_hi, y_hi = xs[i_hi], ys[i_hi]
    y_lo = next(y for y in ys if y >= lo * final)
    return (y_hi - y_lo) / (t_hi - t_lo) if t_hi > t_lo else 0.0


def now() -> float:
    return time.monotonic()
