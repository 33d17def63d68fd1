"""One node of the local Kafka cluster (server.py): its folder, properties file, storage and JVM.

A node is a detached JVM run as a ManagedProcess (pid file, log, own session, SIGTERM then
SIGKILL), so it outlives `adp kafka up` and `adp kafka down` finds it again by its pid file.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from adp.core.errors import AdpError
from adp.core.process import ManagedProcess

log = logging.getLogger(__name__)

LOG4J = Path(__file__).resolve().parent / "log4j2.yaml"


class BrokerError(AdpError):
    pass


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Node:
    """One broker+controller JVM; its command line is set when it starts."""

    index: int
    host: str
    port: int
    controller_port: int
    dir: Path
    # behind a TCP proxy (a fault injector): the proxy's host:port, and the port the node also
    # listens on for the clients that come that way (it sends them back to the proxy)
    proxy: str | None = None
    proxied_port: int | None = None

    def __post_init__(self) -> None:
        # the marker guards against a recycled pid in a stale pid file
        self.process = ManagedProcess(
            name=f"Kafka node {self.index}",
            argv=[],
            pid_file=self.dir / "kafka.pid",
            log_file=self.dir / "server.log",
            marker="kafka.Kafka",
        )

    @property
    def pid_file(self) -> Path:
        return self.process.pid_file

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    def pid(self) -> int | None:
        return self.process.pid()

    def running(self) -> bool:
        return self.process.running()

    def runs_already(self) -> bool:
        """Whether this node runs already, here; a node of this folder that listens elsewhere,
        or another process on its ports, is an error (it could not start)."""
        if self.running():
            listening = self._advertised()
            if listening and f"//{self.host}:{self.port}" not in listening:
                raise BrokerError(
                    f"Kafka node {self.index} already runs from {self.dir} with "
                    f"{listening}: `adp kafka down` first, or use another ADP_HOME"
                )
            return True
        for port in (self.port, self.controller_port, self.proxied_port):
            if port is not None and port_open(self.host, port):
                raise BrokerError(
                    f"port {port} is taken by another process: stop it or set ADP_BOOTSTRAP"
                )
        return False

    def _advertised(self) -> str | None:
        try:
            for line in self.properties.read_text().splitlines():
                if line.startswith("advertised.listeners="):
                    return line.split("=", 1)[1]
        except OSError:
            pass
        return None

    def write_properties(self, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.properties.touch()
        self.properties.chmod(0o600)  # secure: it holds the inter-broker password
        self.properties.write_text(text)

    def format_storage(self, libs: Path, cluster_id: str, extra: list[str]) -> None:
        """Format the node's log dir for `cluster_id`, once (a formatted dir is left alone)."""
        if (self.dir / "data" / "meta.properties").exists():
            return
        proc = subprocess.run(
            [
                "java",
                "-cp",
                f"{libs}/*",
                f"-Dlog4j2.configurationFile={LOG4J}",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.properties),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(f"formatting {self.dir} failed:\n{proc.stdout}{proc.stderr}")

    def launch(self, libs: Path, heap_mb: int) -> None:
        """Start the JVM, detached: it outlives `adp kafka up`; `down` stops it."""
        self.process.argv = [
            "java",
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.properties),
        ]
        pid, _ = self.process.start()
        log.info(
            "started Kafka node %d (pid %d) on %s:%d, log %s",
            self.index,
            pid,
            self.host,
            self.port,
            self.log_file,
        )
