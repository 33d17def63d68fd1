"""A real Apache Kafka broker (KRaft mode) that the project starts itself, from Maven Central jars.

`adp kafka up` resolves the jars with `mvn` (streams/broker/pom.xml pins the version) into
$ADP_CACHE_DIR/kafka-<version>/libs, formats storage on first start and launches each node as a
detached JVM with its own log file and pid file. One node is broker+controller; N nodes
(fault tests) form one combined-mode quorum. Nothing here is a mock: tests and the demo talk to
this broker over TCP like any user would.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from adp.core.settings import settings
from adp.core.process import pid_alive, tail

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
KAFKA_VERSION = re.search(r"<kafka.version>(.+?)</kafka.version>", POM.read_text()).group(1)
CONTROLLER_PORT_OFFSET = 100  # node i listens for clients on port+i, for the quorum on port+100+i


class BrokerError(RuntimeError):
    pass


def ensure_jars() -> Path:
    """Resolve the broker's jars once per machine into $ADP_CACHE_DIR/kafka-<version>/libs."""
    return resolve_jars(POM, settings().cache_dir / f"kafka-{KAFKA_VERSION}" / "libs",
                        f"Apache Kafka {KAFKA_VERSION}")


def resolve_jars(pom: Path, libs: Path, what: str) -> Path:
    """Copy the runtime dependencies `pom` names into `libs` with Maven, once (a marker file
    says the copy is complete). Also used by the tests for Apache Avro's Java library."""
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError(f"Maven (mvn) is needed to fetch the {what} jars: apt-get install maven")
    if shutil.which("java") is None:
        raise BrokerError("Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    log.info("resolving %s jars with Maven into %s", what, libs)
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BrokerError(f"mvn could not resolve {what}:\n{proc.stdout[-3000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(libs)
    marker.touch()
    return libs


def new_cluster_id() -> str:
    """16 random bytes, url-safe base64 without padding -- as Kafka's own random-uuid, which
    also never starts with '-' (a command line would read that as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Node:
    index: int
    host: str
    port: int
    controller_port: int
    dir: Path

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            return False
        try:  # a recycled pid is not our broker
            return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False


class KafkaCluster:
    """One local Kafka cluster: `nodes` combined broker+controller JVMs on consecutive ports."""

    def __init__(self, home: Path | None = None, bootstrap: str | None = None, nodes: int = 1,
                 name: str = "default", heap_mb: int = 512):
        s = settings()
        self.home = (home or s.home).resolve()
        host, port = (bootstrap or s.bootstrap).split(",")[0].rsplit(":", 1)
        self.host, self.base_port, self.heap_mb = host, int(port), heap_mb
        self.dir = self.home / "kafka" / name
        self.nodes = [
            Node(i, host, self.base_port + i, self.base_port + CONTROLLER_PORT_OFFSET + i,
                 self.dir / f"node-{i}")
            for i in range(nodes)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def _properties(self, node: Node) -> str:
        n = len(self.nodes)
        voters = ",".join(f"{m.index + 1}@{m.host}:{m.controller_port}" for m in self.nodes)
        rf = min(3, n)
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node.index + 1}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://{node.host}:{node.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={node.dir / 'data'}",
            "num.partitions=6",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min(2, n)}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=12",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min(2, n)}",
            # tests and the demo start consumers right away; don't wait 3 s for more members
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # the broker must never refuse a large trajectory or a 10 MB task description
            "message.max.bytes=33554432",
            "replica.fetch.max.bytes=33554432",
            "",
        ])

    def _format(self, libs: Path, node: Node) -> None:
        cluster_id_file = self.dir / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        if (node.dir / "data" / "meta.properties").exists():
            return
        proc = subprocess.run(
            ["java", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={HERE / 'log4j2.yaml'}",
             "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id_file.read_text().strip()}",
             "-c", str(node.dir / "server.properties")],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(f"formatting {node.dir} failed:\n{proc.stdout}{proc.stderr}")

    def start_node(self, node: Node) -> None:
        """Start one node if it is not running (idempotent). Does not wait for readiness."""
        if node.running():
            return
        for port in (node.port, node.controller_port):
            if _port_open(node.host, port):
                raise BrokerError(
                    f"port {port} is taken by another process: stop it or set ADP_BOOTSTRAP"
                )
        libs = ensure_jars()
        node.dir.mkdir(parents=True, exist_ok=True)
        (node.dir / "server.properties").write_text(self._properties(node))
        self._format(libs, node)
        with open(node.log_file, "ab") as out:
            proc = subprocess.Popen(
                ["java", f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m",
                 "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={HERE / 'log4j2.yaml'}",
                 "-cp", f"{libs}/*", "kafka.Kafka", str(node.dir / "server.properties")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives `adp kafka up`; `down` stops it
            )
        node.pid_file.write_text(str(proc.pid))
        log.info("started Kafka node %d (pid %d) on %s:%d, log %s",
                 node.index, proc.pid, node.host, node.port, node.log_file)

    def stop_node(self, node: Node, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
        """Stop one node; SIGKILL after `grace` seconds. sig=SIGKILL is the fault tests' kill -9."""
        pid = node.pid() if node.running() else None
        if pid is not None:
            os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                log.warning("Kafka node %d did not stop in %.0fs; killing it", node.index, grace)
                os.kill(pid, signal.SIGKILL)
                while pid_alive(pid):
                    time.sleep(0.05)
        node.pid_file.unlink(missing_ok=True)

    def up(self, timeout: float = 120.0, topics: bool = True) -> None:
        for node in self.nodes:
            self.start_node(node)
        asyncio.run(self.wait_ready(timeout))
        if topics:
            from adp.streams.admin import ensure_topics
            asyncio.run(ensure_topics(self.bootstrap, replication=min(3, len(self.nodes))))

    async def wait_ready(self, timeout: float = 120.0, nodes: list[Node] | None = None) -> None:
        """Wait until every node answers metadata requests as a broker of this cluster."""
        from adp.streams.admin import cluster_broker_ids

        want = {n.index + 1 for n in (nodes or self.nodes)}
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for n in nodes or self.nodes:
                pid = n.pid()
                if pid is None or not pid_alive(pid):
                    raise BrokerError(f"Kafka node {n.index} exited; see {n.log_file}:\n"
                                      + tail(n.log_file))
            if not all(_port_open(n.host, n.port) for n in nodes or self.nodes):
                await asyncio.sleep(0.3)  # JVM still starting; asking now only logs errors
                continue
            try:
                if want <= await cluster_broker_ids(self.bootstrap):
                    return
            except Exception as exc:  # not up yet: connection refused, no controller, ...
                last_error = exc
            await asyncio.sleep(0.5)
        raise BrokerError(f"Kafka not ready after {timeout:.0f}s ({last_error}); "
                          f"see {self.nodes[0].log_file}")

    def down(self, grace: float = 30.0) -> None:
        """Stop every node. All get SIGTERM at once: stopped one by one, the last ones wait
        for a controller quorum that is already gone."""
        for node in self.nodes:
            if node.running():
                os.kill(node.pid(), signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.nodes:
            self.stop_node(node, grace=max(0.0, deadline - time.monotonic()))

    def status(self) -> list[dict]:
        return [{"node": n.index, "pid": n.pid() if n.running() else None,
                 "address": f"{n.host}:{n.port}", "running": n.running(),
                 "log": str(n.log_file)} for n in self.nodes]

    def wipe(self) -> None:
        """Stop and delete all data (tests use this to start from an empty cluster)."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)
