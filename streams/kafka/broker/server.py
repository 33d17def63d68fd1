"""A real Apache Kafka broker (KRaft mode) that the project starts itself, from Maven Central jars.

`adp kafka up` resolves the jars with `mvn` (streams/kafka/broker/pom.xml pins the version) into
$ADP_CACHE_DIR/kafka-<version>/libs, formats storage on first start and launches each node as a
detached JVM with its own log file and pid file. One node is broker+controller; N nodes
(fault tests) form one combined-mode quorum. This module is the cluster (jars, configuration,
readiness, topics, ACLs); node.py is one node's folder and JVM. Nothing here is a mock: tests
and the demo talk to this broker over TCP like any user would.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from adp.core.process import tail
from adp.core.settings import Settings, settings
from adp.streams.kafka.broker.node import BrokerError, Node, port_open
from adp.streams.kafka.broker.security import ADMIN, ClusterSecurity, SecurityError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
KAFKA_VERSION = re.search(r"<kafka.version>(.+?)</kafka.version>", POM.read_text()).group(1)
CONTROLLER_PORT_OFFSET = 100  # node i listens for clients on port+i, for the quorum on port+100+i
PROXIED_PORT_OFFSET = 200  # ... and, behind a proxy (KafkaCluster proxies=), on port+200+i


def free_port_block(size: int = 1, lowest: int = 24000) -> int:
    """A base port such that base..base+size-1 and their controller and proxied ports
    (+CONTROLLER_PORT_OFFSET, +PROXIED_PORT_OFFSET) look free: where a throwaway local cluster
    (tests, bench) can listen. Drawn below Linux's ephemeral range (32768+): a listener there
    can collide with a client's source port, and a broker polled before it listens can even
    connect to itself."""
    import random

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    for _ in range(200):
        base = random.randrange(lowest, 32000 - PROXIED_PORT_OFFSET - size)
        ports = [
            port + offset
            for offset in (0, CONTROLLER_PORT_OFFSET, PROXIED_PORT_OFFSET)
            for port in range(base, base + size)
        ]
        if all(free(p) for p in ports):
            return base
    raise BrokerError("no free port block found")


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Resolve the broker's jars once per machine into $ADP_CACHE_DIR/kafka-<version>/libs."""
    libs = (cache_dir or settings().cache_dir) / f"kafka-{KAFKA_VERSION}" / "libs"
    return resolve_jars(POM, libs, f"Apache Kafka {KAFKA_VERSION}")


def resolve_jars(pom: Path, libs: Path, what: str) -> Path:
    """Copy the runtime dependencies `pom` names into `libs` with Maven, once (a marker file
    says the copy is complete). Also used by the tests for Apache Avro's Java library."""
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError(f"Maven (mvn) is needed to fetch the {what} jars: apt-get install maven")
    if shutil.which("java") is None:
        raise BrokerError(
            "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
        )
    log.info("resolving %s jars with Maven into %s", what, libs)
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
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


class KafkaCluster:
    """One local Kafka cluster: `nodes` combined broker+controller JVMs on consecutive ports."""

    def __init__(
        self,
        home: Path | None = None,
        bootstrap: str | None = None,
        nodes: int = 1,
        name: str = "default",
        heap_mb: int = 512,
        conf: Settings | None = None,
        partitions: dict[str, int] | None = None,
        secure: bool | None = None,
        proxies: list[str] | None = None,
    ):
        """`conf`: the settings to take defaults from (home, bootstrap = the first node's
        address, cache, message size limit); `partitions`: per topic family at creation;
        `secure`: SASL_SSL + SCRAM + ACLs (streams/kafka/broker/security.py), chosen when the
        cluster is first formatted (None: as it was formatted); `proxies`: per node, the
        host:port of a TCP proxy that forwards to the node's proxied_port (a fault injector
        such as Toxiproxy): clients bootstrapped there keep talking through it
        (`proxied_bootstrap`), the others reach the node directly."""
        self.conf = s = conf or settings()
        self.home = (home or s.home).resolve()
        host, port = (bootstrap or s.bootstrap).split(",")[0].rsplit(":", 1)
        self.host, self.base_port, self.heap_mb = host, int(port), heap_mb
        self.partitions = partitions
        self.dir = self.home / "kafka" / name
        self.security = ClusterSecurity(self.dir)
        formatted = (self.dir / "cluster.id").exists()
        if secure is not None and formatted and secure != self.security.enabled:
            raise BrokerError(
                f"the cluster in {self.dir} was created "
                f"{'with' if self.security.enabled else 'without'} --secure; stop it and delete "
                f"that folder to change it, or use another ADP_HOME"
            )
        self.secure = self.security.enabled if secure is None else secure
        if proxies is not None and (self.secure or len(proxies) != nodes):
            raise BrokerError("proxies: one host:port per node, on a plaintext cluster")
        self.nodes = [
            Node(
                i,
                host,
                self.base_port + i,
                self.base_port + CONTROLLER_PORT_OFFSET + i,
                self.dir / f"node-{i}",
                proxies[i] if proxies else None,
                self.base_port + PROXIED_PORT_OFFSET + i if proxies else None,
            )
            for i in range(nodes)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    @property
    def proxied_bootstrap(self) -> str:
        """The bootstrap of clients that reach the cluster through the proxies only."""
        return ",".join(n.proxy for n in self.nodes if n.proxy)

    def client_settings(self, user: str = ADMIN) -> Settings:
        """Settings for a client of this cluster (secure: as `user`, by default the admin)."""
        if self.secure:
            return self.security.client_settings(self.bootstrap, user)
        # a plaintext local cluster, whatever security the settings name for other clusters
        return self.conf.model_copy(
            update={"bootstrap": self.bootstrap, "security_protocol": "PLAINTEXT"}
        )

    @staticmethod
    def _plaintext_listeners(node: Node) -> list[str]:
        # a proxied node: a second listener whose clients are sent back to the proxy
        listen, advertise, protocols = "", "", ""
        if node.proxy:
            listen = f",PROXIED://{node.host}:{node.proxied_port}"
            advertise, protocols = f",PROXIED://{node.proxy}", ",PROXIED:PLAINTEXT"
        return [
            f"listeners=PLAINTEXT://{node.host}:{node.port},"
            f"CONTROLLER://{node.host}:{node.controller_port}{listen}",
            f"advertised.listeners=PLAINTEXT://{node.host}:{node.port}{advertise}",
            f"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}",
            "inter.broker.listener.name=PLAINTEXT",
        ]

    def _properties(self, node: Node) -> str:
        n = len(self.nodes)
        voters = ",".join(f"{m.index + 1}@{m.host}:{m.controller_port}" for m in self.nodes)
        rf = min(3, n)
        if self.secure:
            listeners = self.security.broker_properties(node.host, node.port, node.controller_port)
        else:
            listeners = self._plaintext_listeners(node)
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.index + 1}",
                f"controller.quorum.voters={voters}",
                "controller.listener.names=CONTROLLER",
                *listeners,
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
                f"message.max.bytes={self.conf.max_message_bytes}",
                f"replica.fetch.max.bytes={self.conf.max_message_bytes}",
                "",
            ]
        )

    def _format(self, libs: Path, node: Node) -> None:
        cluster_id_file = self.dir / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        extra = self.security.scram_arguments() if self.secure else []
        node.format_storage(libs, cluster_id_file.read_text().strip(), extra)

    def start_node(self, node: Node) -> None:
        """Start one node if it is not running (idempotent). Does not wait for readiness."""
        if node.runs_already():
            return
        libs = ensure_jars(self.conf.cache_dir)
        node.write_properties(self._properties(node))
        self._format(libs, node)
        node.launch(libs, self.heap_mb)

    def stop_node(self, node: Node, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
        """Stop one node; SIGKILL after `grace` seconds. sig=SIGKILL is the fault tests' kill -9."""
        if sig == signal.SIGKILL:
            node.process.send(signal.SIGKILL)
        if node.process.stop(grace) is not None and sig != signal.SIGKILL:
            log.info("stopped Kafka node %d", node.index)

    def up(self, timeout: float = 120.0, topics: bool = True) -> None:
        """Start every node, wait until ready, create the platform's topics; secure: also the
        TLS material and users (first time), each user's client config and its role's ACLs."""
        if self.secure:
            try:
                self.security.prepare(self.host)
            except SecurityError as exc:
                raise BrokerError(str(exc)) from None
        for node in self.nodes:
            self.start_node(node)
        if self.secure:
            self.security.write_client_configs(self.bootstrap)
        asyncio.run(self._ready(timeout, topics))

    async def _ready(self, timeout: float, topics: bool) -> None:
        from adp.streams.kafka.admin import admin_client, ensure_topics

        await self.wait_ready(timeout)
        conf = self.client_settings()
        if topics:
            await ensure_topics(
                conf, replication=min(3, len(self.nodes)), partitions=self.partitions
            )
        if self.secure:
            from adp.streams.kafka.authz import create_acls, role_acls

            acls = [
                acl
                for name, entry in self.security.users().items()
                if entry["role"] != "admin"
                for acl in role_acls(entry["role"], f"User:{name}")
            ]
            async with admin_client(conf) as admin:
                await create_acls(admin, acls)

    async def wait_ready(self, timeout: float = 120.0, nodes: list[Node] | None = None) -> None:
        """Wait until every node answers metadata requests as a broker of this cluster."""
        from adp.streams.kafka.admin import cluster_broker_ids

        want = {n.index + 1 for n in (nodes or self.nodes)}
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for n in nodes or self.nodes:
                if n.pid() is None:
                    how = n.process.exit_description()
                    raise BrokerError(
                        f"Kafka node {n.index} exited{f' ({how})' if how else ''}"
                        f"; see {n.log_file}:\n" + tail(n.log_file)
                    )
            if not all(port_open(n.host, n.port) for n in nodes or self.nodes):
                await asyncio.sleep(0.3)  # JVM still starting; asking now only logs errors
                continue
            try:
                if want <= await cluster_broker_ids(self.client_settings()):
                    return
            except Exception as exc:  # not up yet: connection refused, no controller, ...
                last_error = exc
            await asyncio.sleep(0.5)
        raise BrokerError(
            f"Kafka not ready after {timeout:.0f}s ({last_error}); see {self.nodes[0].log_file}"
        )

    def down(self, grace: float = 30.0) -> None:
        """Stop every node. All get SIGTERM at once: stopped one by one, the last ones wait
        for a controller quorum that is already gone."""
        for node in self.nodes:
            node.process.send(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.nodes:
            self.stop_node(node, grace=max(0.0, deadline - time.monotonic()))

    def status(self) -> list[dict]:
        return [
            {
                "node": n.index,
                "pid": n.pid() if n.running() else None,
                "address": f"{n.host}:{n.port}",
                "running": n.running(),
                "log": str(n.log_file),
            }
            for n in self.nodes
        ]

    def wipe(self) -> None:
        """Stop and delete all data (tests use this to start from an empty cluster)."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)
