"""What every benchmark part shares: its own broker and stub LLMs, child processes, the table
printed as figures come in, series for the plots, and py-spy profiles.

A part is a module in bench/parts/ with

    KEY = "b"                      # order in the run; `python -m bench b` runs it alone
    NAME = "aggregator"            # `python -m bench aggregator` too
    TITLE = "Aggregator, live"
    async def run(bench: Bench) -> None

and reports through `bench.figure(...)` (a value, the baseline measured in the same run, their
ratio and the target it is held to), `bench.series(...)` (plots) and `bench.profile(...)`.
Adding a part is adding a module: the runner finds them by name (bench/__main__.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adp.core.process import ChildProcesses, http_ok

ADP = [sys.executable, "-m", "adp"]
console = Console()


@dataclass
class Figure:
    part: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""  # e.g. ">= 0.5": what the ratio (or the value) must be
    met: bool | None = None  # None: no target
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value:
            return self.value / self.baseline_value
        return None


@dataclass
class Series:
    part: str
    name: str
    kind: str  # "throughput" (x: s, y: /s) | "rss" (x: s, y: MiB) | "cdf" (samples)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


def meets(value: float | None, target: str) -> bool | None:
    """'>= 0.5' / '< 1' against a value."""
    if not target or value is None:
        return None
    op, _, limit = target.partition(" ")
    bound = float(limit)
    return {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]


class Bench:
    def __init__(self, work: Path, quick: bool = False, scale: float = 1.0) -> None:
        self.work = work
        self.quick = quick
        self.scale = scale
        self.figures: list[Figure] = []
        self.series_list: list[Series] = []
        self.profiles: dict[str, list[tuple[float, str]]] = {}
        self.notes: dict[str, list[str]] = {}
        self.shared: dict[str, Any] = {}  # what one part measured that another reuses
        self.cluster: Any = None
        self.env: dict[str, str] = {}
        self.children = ChildProcesses(work, dict(os.environ))
        self._stubs: dict[str, str] = {}
        self._port = 0
        self.table = Table(title="adp bench", show_lines=False)
        for col in ("part", "figure", "value", "baseline", "ratio", "target", "met"):
            self.table.add_column(col, justify="right" if col in ("value", "ratio") else "left")

    def size(self, full: int, quick: int) -> int:
        """A workload size: `quick` with --quick, else `full` times --scale."""
        return quick if self.quick else max(1, int(full * self.scale))

    # -- services ------------------------------------------------------------------------------
    def start_broker(self, port: int) -> str:
        from adp.streams.kafka.broker.server import KafkaCluster

        self._port = port
        self.cluster = KafkaCluster(
            home=self.work / "home", bootstrap=f"127.0.0.1:{port}", name="bench"
        )
        self.cluster.wipe()
        self.cluster.up(timeout=240)
        self.env = {
            "ADP_BOOTSTRAP": self.cluster.bootstrap,
            "ADP_HOME": str(self.work / "home"),
            "ADP_METRICS_PORT": "0",
            "ADP_LLM_MODEL": "stub",
        }
        self.children.env.update(self.env)
        return self.cluster.bootstrap

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def stub(self, latency: float, script: Any = None) -> str:
        """A stub LLM process with this latency (and script); one per combination."""
        key = f"{latency}-{json.dumps(script, sort_keys=True)}"
        if key not in self._stubs:
            port = self._port + 10 + len(self._stubs)
            args = [*ADP, "llm-stub", "--port", str(port), "--latency", str(latency)]
            if script is not None:
                path = self.work / f"stub-script-{len(self._stubs)}.json"
                path.write_text(json.dumps(script))
                args += ["--script", str(path)]
            self.children.start(f"llm-stub-{len(self._stubs)}", args)
            deadline = time.monotonic() + 60
            while not http_ok(f"http://127.0.0.1:{port}/health"):
                self.children.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("the stub LLM did not start")
                time.sleep(0.2)
            self._stubs[key] = f"http://127.0.0.1:{port}/v1"
        return self._stubs[key]

    @property
    def cluster_port(self) -> int:
        return self._port

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> Any:
        """An `adp ARGS` child process, or `python COMMAND ARGS` (its log in the work folder)."""
        argv = ([sys.executable, *command] if command else ADP) + args
        saved = dict(self.children.env)
        self.children.env.update(env or {})
        try:
            return self.children.start(name, argv)
        finally:
            self.children.env = saved

    def stop(self, name: str, grace: float = 40.0) -> int | None:
        """Stop one child (SIGTERM, then SIGKILL after `grace`); its exit status."""
        import signal

        for entry in list(self.children.procs):
            child, proc, _ = entry
            if child != name:
                continue
            self.children.procs.remove(entry)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            return proc.returncode
        return None

    def log_of(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def close(self) -> None:
        self.children.stop()
        if self.cluster is not None:
            self.cluster.down()

    # -- reporting -----------------------------------------------------------------------------
    def figure(
        self,
        part: str,
        name: str,
        value: float,
        unit: str,
        baseline: str = "",
        baseline_value: float | None = None,
        target: str = "",
        on: str = "ratio",
        note: str = "",
    ) -> Figure:
        """Record one figure; `target` applies to the ratio (on="ratio") or the value."""
        f = Figure(part, name, value, unit, baseline, baseline_value, target, None, note)
        f.met = meets(f.ratio if on == "ratio" else value, target)
        if target and on != "ratio":
            f.target = f"value {target}"
        self.figures.append(f)
        base = f"{fmt(baseline_value)} {unit} ({baseline})" if baseline_value is not None else ""
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[f.met]
        self.table.add_row(part, name, f"{fmt(value)} {unit}", base, ratio, f.target, met)
        console.print(
            f"  [bold]{part}[/] {name}: {fmt(value)} {unit}"
            + (f" | {baseline}: {fmt(baseline_value)} -> ratio {ratio}" if base else "")
            + (f" | target {f.target}: {met}" if target else "")
        )
        return f

    def series(
        self, part: str, name: str, kind: str, x: list[float], y: list[float] | None = None
    ) -> None:
        self.series_list.append(Series(part, name, kind, list(x), list(y or [])))

    def note(self, part: str, text: str) -> None:
        self.notes.setdefault(part, []).append(text)
        console.print(f"  [dim]{part}: {text}[/]")

    def profile(self, name: str, pid: int, seconds: float) -> subprocess.Popen | None:
        """Start py-spy sampling `pid` for `seconds` (raw collapsed stacks); `profile_done`
        reads it. None where py-spy is missing or not allowed to attach."""
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            self.note(name, "py-spy not installed: no profile")
            return None
        out = self.work / f"profile-{name}.txt"
        return subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "50",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def profile_done(self, name: str, proc: subprocess.Popen | None, top: int = 15) -> None:
        if proc is None:
            return
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        out = self.work / f"profile-{name}.txt"
        if not out.exists():
            self.note(name, "py-spy wrote no profile (not allowed to attach?)")
            return
        self.profiles[name] = summarize_profile(out.read_text(), top)

    # -- output --------------------------------------------------------------------------------
    def as_dict(self, machine: dict) -> dict:
        return {
            "machine": machine,
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
            "series": [asdict(s) for s in self.series_list],
            "profiles": {
                k: [{"share": s, "frame": fr} for s, fr in v] for k, v in self.profiles.items()
            },
            "notes": self.notes,
        }


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def summarize_profile(raw: str, top: int) -> list[tuple[float, str]]:
    """py-spy raw output (collapsed stacks) -> the frames with the largest inclusive share of
    samples, skipping the event loop's own frames (they include everything)."""
    inclusive: Counter = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    skip = (
        "run_forever",
        "run_until_complete",
        "_run_once",
        "Handle._run",
        "<module>",
        "execute_from_commandline",
        "_run_module_as_main",
        "_run_code",
        "main (",
        "Thread._bootstrap",
        "invoke (",
        "__call__ (",
        "asyncio/runners",
        "run (asyncio",
        "Runner.run",
        "callback (",
    )
    rows = [
        (100.0 * n / total, frame)
        for frame, n in inclusive.most_common(top * 4)
        if total and not any(s in frame for s in skip)
    ]
    return rows[:top]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(url: str, name: str) -> float:
    """Sum of all samples of one metric at a /metrics URL (0 if absent or unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def sample(every: float, until: Any, probe: Any, timeout: float) -> tuple[list, list]:
    """Call probe() every `every` seconds until until() is true; (times, values)."""
    began = time.monotonic()
    xs, ys = [], []
    while True:
        xs.append(time.monotonic() - began)
        ys.append(probe())
        if until():
            return xs, ys
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"gave up after {timeout:.0f}s")
        await asyncio.sleep(every)


async def bare_chat_calls(url: str, concurrency: int, seconds: float, content: str) -> float:
    """Chat calls/s of a plain aiohttp loop against a stub LLM, every call asking `content`:
    the ceiling a part's baseline is measured against."""
    import aiohttp

    body = {"model": "stub", "messages": [{"role": "user", "content": content}]}
    done, end = 0, time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def one() -> None:
            nonlocal done
            while time.monotonic() < end:
                async with http.post(f"{url}/chat/completions", json=body) as resp:
                    await resp.read()
                done += 1

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return done / (time.monotonic() - began)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="adp-bench-"))
