"""`python -m bench [PART ...]`: the platform's speed figures, each a ratio against a baseline
measured in the same run on the same machine (`make bench` runs them all).

Starts its own Kafka broker (cluster "bench") and stub LLMs, runs the parts in order (a part is
a module of bench/parts/, named by its KEY letter or its NAME), prints each figure as it comes,
and writes bench/results/<date>.json and <date>.md with PNG plots beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import pkgutil
import platform
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from adp.streams.kafka.broker.server import free_port_block
from bench import parts as parts_pkg
from bench.core import Bench, console, load_average, new_workdir

RESULTS = Path(__file__).resolve().parent / "results"


def discover() -> list:
    """Every part module of bench/parts/, in KEY order."""
    found = []
    for info in pkgutil.iter_modules(parts_pkg.__path__):
        module = importlib.import_module(f"bench.parts.{info.name}")
        if hasattr(module, "run") and hasattr(module, "KEY"):
            found.append(module)
    for m in found:  # the file name says the key: parts merged from branches keep distinct ones
        if not m.__name__.rsplit(".", 1)[-1].startswith(f"{m.KEY}_"):
            raise SystemExit(f"{m.__name__}: KEY {m.KEY!r} is not its file name's prefix")
    return sorted(found, key=lambda m: (m.KEY, m.NAME))


def machine() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    except (ValueError, OSError):
        pass
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load_average()],
    }


def main() -> None:
    every = discover()
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help="parts to run, by key or name: "
        + ", ".join(f"{m.KEY}={m.NAME}" for m in every)
        + " (default: all)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smaller workloads (a smoke run of the harness, not figures to quote)",
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload size (default 1: the sizes the targets are "
        "stated for; the report says when another was used)",
    )
    ap.add_argument(
        "--port",
        type=int,
        default=None,
        help="Kafka port of the bench cluster (default: a free one; the stubs and "
        "metrics use the next 50)",
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the report goes")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (broker data, outputs, child logs, raw "
        "profiles; about 1.5 GB at --scale 1) instead of removing it at the end",
    )
    args = ap.parse_args()
    wanted = [m for m in every if not args.parts or m.KEY in args.parts or m.NAME in args.parts]
    unknown = set(args.parts) - {m.KEY for m in every} - {m.NAME for m in every}
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    try:  # the report's plots: found out now, not after the whole run
        import matplotlib  # noqa: F401
    except ImportError:
        ap.error(
            "matplotlib is missing (the report's plots): run `make bench`, or "
            "pip install -e '.[bench]'"
        )

    import signal

    def stop(signum: int, _frame: object) -> None:  # SIGTERM: stop what we started, too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    work = new_workdir()
    bench = Bench(work, quick=args.quick, scale=args.scale)
    info = machine()
    info["scale"], info["quick"] = args.scale, args.quick
    console.print(
        f"[bold]adp bench[/]: {len(wanted)} part(s) on {info['cpus']} CPUs "
        f"({info['cpu']}), load average {info['load_average_at_start']}; work {work}"
    )
    began = time.monotonic()
    loads: dict[str, list[float]] = {}
    took: dict[str, float] = {}  # seconds per part: where `make bench`'s 15 minutes go
    try:
        if any(getattr(m, "NEEDS_BROKER", True) for m in wanted):
            port = args.port or free_port_block(60)
            console.print(f"starting Kafka on 127.0.0.1:{port} ...")
            bench.start_broker(port)
        for module in wanted:
            console.rule(f"{module.KEY}. {module.TITLE}")
            t0 = time.monotonic()
            try:
                asyncio.run(module.run(bench))
            except Exception as exc:
                bench.note(module.KEY, f"FAILED: {type(exc).__name__}: {exc}")
                console.print(traceback.format_exc())
            loads[module.KEY] = [round(x, 2) for x in load_average()]
            took[module.KEY] = round(time.monotonic() - t0, 1)
            console.print(
                f"  [dim]{took[module.KEY]:.0f}s, load average after: {loads[module.KEY]}[/]"
            )
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info["load_average_after_part"] = loads
    info["seconds_per_part"] = took
    info["seconds"] = round(time.monotonic() - began, 1)
    console.print(bench.table)
    from bench.report import write_report

    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    paths = write_report(bench, info, args.results, stamp, [m for m in wanted])
    console.print(f"wrote {', '.join(str(p) for p in paths)} in {info['seconds']:.0f}s")


if __name__ == "__main__":
    main()
