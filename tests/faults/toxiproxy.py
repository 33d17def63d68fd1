"""Toxiproxy (https://github.com/Shopify/toxiproxy): a TCP proxy that cuts, delays or slows the
connections through it on request, the network fault injector of the outage tests.

Built once per machine from its Go module (`go install`, through the Go module proxy) into the
project's cache folder, so a fresh clone gets it with nothing but Go installed; then run as a
child process on a free port and driven through its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from adp.core.settings import settings
from adp.streams.kafka.broker.server import free_port_block
from tests.helpers import wait_for

MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
VERSION = "v2.5.0"


class ToxiproxyUnavailable(Exception):
    """Toxiproxy cannot be built here (no Go toolchain, no module proxy); the message says why."""


def binary() -> Path:
    """The toxiproxy server binary, built on first use (a few minutes) and cached."""
    folder = settings().cache_dir / f"toxiproxy-{VERSION}"
    exe = folder / "toxiproxy-server"
    if exe.exists():
        return exe
    go = shutil.which("go")
    if go is None:
        raise ToxiproxyUnavailable("Go is not installed: apt-get install golang-go (or go.dev)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as gobin:  # concurrent builds: one rename wins
        done = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            env={**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise ToxiproxyUnavailable(
                f"go install {MODULE}@{VERSION} failed: {done.stderr[-800:]}"
            )
        os.replace(Path(gobin) / "server", exe)
    return exe


class Toxiproxy:
    """One toxiproxy server process; proxies are named, toxics are added and removed by name."""

    def __init__(self, log: Path) -> None:
        self.port = free_port_block()
        self.api = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Toxiproxy:
        with open(self._log, "ab") as out:
            self._proc = subprocess.Popen(
                [str(binary()), "-host", "127.0.0.1", "-port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(lambda: self._answers(), 30, "toxiproxy to answer", check=self._alive)
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)

    def _alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise AssertionError(f"toxiproxy exited: {self._log.read_text()[-2000:]}")

    def _answers(self) -> bool:
        try:
            self._call("GET", "/proxies")
            return True
        except OSError:
            return False

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def proxy(self, name: str, listen: str, upstream: str) -> None:
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream})

    def cut(self, name: str) -> None:
        """Partition: close every connection through the proxy and refuse new ones."""
        self._call("POST", f"/proxies/{name}", {"enabled": False})

    def heal(self, name: str) -> None:
        self._call("POST", f"/proxies/{name}", {"enabled": True})

    def latency(self, name: str, ms: int, jitter: int = 0) -> None:
        """Delay every byte through the proxy by `ms` (+- jitter) milliseconds, both ways."""
        for stream in ("upstream", "downstream"):
            self._call(
                "POST",
                f"/proxies/{name}/toxics",
                {
                    "name": f"latency-{stream}",
                    "type": "latency",
                    "stream": stream,
                    "attributes": {"latency": ms, "jitter": jitter},
                },
            )

    def clear(self, name: str) -> None:
        """Remove every toxic of the proxy."""
        for toxic in self._call("GET", f"/proxies/{name}/toxics"):
            self._call("DELETE", f"/proxies/{name}/toxics/{toxic['name']}")
