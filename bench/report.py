"""The bench's output: <date>.json (every figure, series and profile), <date>.md (the report)
and PNG plots (throughput over time, latency CDFs, RSS over time) beside them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.core import Bench, fmt


def _plot(bench: Bench, out: Path, stamp: str) -> dict[str, list[str]]:
    """One PNG per (part, kind); returns part -> file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list] = {}
    for s in bench.series_list:
        groups.setdefault((s.part, s.kind), []).append(s)
    made: dict[str, list[str]] = {}
    labels = {
        "throughput": ("seconds", "per second"),
        "rss": ("seconds", "RSS (MiB)"),
        "cdf": ("seconds", "fraction of samples"),
    }
    for (part, kind), items in groups.items():
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
        for s in items:
            if kind == "cdf":
                xs = sorted(s.x)
                if not xs:
                    continue
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=s.name)
                ax.set_xscale("log")
            else:
                ax.plot(s.x, s.y, label=s.name)
        xl, yl = labels.get(kind, ("x", "y"))
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{part}: {kind}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"{stamp}-{part}-{kind}.png"
        fig.savefig(out / name)
        plt.close(fig)
        made.setdefault(part, []).append(name)
    return made


def write_report(
    bench: Bench, machine: dict, out: Path, stamp: str, parts: list[Any]
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{stamp}*"):
        old.unlink()
    doc = bench.as_dict(machine)
    json_path = out / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    plots = _plot(bench, out, stamp)
    lines = [
        f"# adp bench, {stamp}",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}. Load average at start "
        f"{machine['load_average_at_start']} (a shared machine: other work ran beside the "
        f"bench; every figure is a ratio against a baseline measured in the same run). "
        f"Run took {machine.get('seconds', 0):.0f}s."
        + (
            f" Workloads scaled by {machine['scale']} (--scale)."
            if machine.get("scale", 1) != 1
            else ""
        )
        + (" --quick: a smoke run, not figures to quote." if machine.get("quick") else ""),
        "",
        "| part | figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in bench.figures:
        base = f"{fmt(f.baseline_value)} {f.unit} ({f.baseline})" if f.baseline_value else ""
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        lines.append(
            f"| {f.part} | {f.name} | {fmt(f.value)} {f.unit} | {base} | {ratio} | "
            f"{f.target} | {met} |"
        )
    loads = machine.get("load_average_after_part", {})
    for module in parts:
        key = module.KEY
        lines += ["", f"## {key}. {module.TITLE}", ""]
        doc_text = (module.__doc__ or "").strip()
        if doc_text:
            lines += [re.sub(r"\n(?!\n)", " ", doc_text), ""]
        if key in loads:
            took = machine.get("seconds_per_part", {}).get(key)
            lines.append(
                (f"Took {took:.0f}s. " if took is not None else "")
                + f"Load average after this part: {loads[key]}."
            )
            lines.append("")
        for text in bench.notes.get(key, []):
            lines.append(f"- {text}")
        for name in plots.get(key, []):
            lines += ["", f"![{name}]({name})"]
        for pname, rows in bench.profiles.items():
            if pname.startswith(key):
                lines += [
                    "",
                    f"Profile `{pname}` (py-spy, inclusive share of samples):",
                    "",
                    "| share | frame |",
                    "|---|---|",
                ]
                lines += [f"| {share:.1f}% | `{frame}` |" for share, frame in rows]
    md_path = out / f"{stamp}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path, *(out / n for names in plots.values() for n in names)]
