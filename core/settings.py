"""Settings shared by every command: flags override ADP_* environment variables override defaults.

Only what more than one component reads lives here; a component's own knobs stay its flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    # Kafka bootstrap servers, comma separated.
    bootstrap: str = field(default_factory=lambda: _env("ADP_BOOTSTRAP", "127.0.0.1:9092"))
    # Where the project keeps its local state: Kafka jars and data, pid files, logs, LLM cache.
    home: Path = field(default_factory=lambda: Path(_env("ADP_HOME", ".adp")).resolve())
    # Downloads reused across checkouts and test runs (Kafka jars).
    cache_dir: Path = field(
        default_factory=lambda: Path(_env("ADP_CACHE_DIR", "~/.cache/adp")).expanduser().resolve()
    )
    # Where the file sink writes trajectories.
    output_dir: Path = field(
        default_factory=lambda: Path(_env("ADP_OUTPUT_DIR", "output/trajectories")).resolve()
    )
    # Prometheus metrics port of the first long-running component on a host.
    metrics_port: int = field(default_factory=lambda: int(_env("ADP_METRICS_PORT", "8001")))
    # LLM price table (JSON file, core/pricing.py); unset: only the embedded model is priced.
    prices: Path | None = field(
        default_factory=lambda: Path(p).expanduser() if (p := _env("ADP_PRICES", "")) else None
    )

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"


def settings() -> Settings:
    return Settings()
