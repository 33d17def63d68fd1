"""Shared fixtures. The `kafka` fixture is a real Apache Kafka broker (KRaft) started from the
project's own jars for the whole test session, on a free port, with its own ADP_HOME."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from adp.runtimes.tools.browser import BrowserPool
from adp.site_server import SiteServer
from adp.streams.broker.server import KafkaCluster


def free_port_block(size: int = 1) -> int:
    """A base port such that base..base+size-1 and their controller ports (+100) look free.

    Drawn below Linux's ephemeral range (32768+): a listener there can collide with a client's
    source port, and a broker polled before it listens can even connect to itself."""
    for _ in range(200):
        base = random.randrange(24000, 32000 - 100 - size)
        ports = [base + i for i in range(size)] + [base + 100 + i for i in range(size)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port block found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def adp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adp-home")


@pytest.fixture(scope="module")
def kafka(adp_home: Path, request: pytest.FixtureRequest) -> KafkaCluster:
    """A fresh single-node cluster with the platform's topics for each test module, so the
    consumer groups, offsets and Faust tables of one module never leak into another."""
    cluster = KafkaCluster(home=adp_home, bootstrap=f"127.0.0.1:{free_port_block()}",
                           name=request.module.__name__.rsplit(".", 1)[-1])
    try:
        cluster.up(timeout=180)
    except BaseException:
        cluster.down()  # a failed start must not leave a broker behind
        raise
    previous = os.environ.get("ADP_BOOTSTRAP")
    os.environ["ADP_BOOTSTRAP"] = cluster.bootstrap
    yield cluster
    cluster.down()
    if previous is None:
        os.environ.pop("ADP_BOOTSTRAP", None)
    else:
        os.environ["ADP_BOOTSTRAP"] = previous


@pytest.fixture(scope="session")
def llm_stub(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project's scripted OpenAI-compatible server, unscripted, as a real HTTP process."""
    from tests.helpers import llm_stub_process

    with llm_stub_process(tmp_path_factory.mktemp("llm-stub")) as url:
        yield url


@pytest.fixture(scope="module")
def site() -> str:
    with SiteServer() as base_url:
        yield base_url


@pytest.fixture(scope="module")
async def pool():
    async with BrowserPool(size=1) as p:
        yield p


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> str:
    """moto's S3 server as a real HTTP endpoint (its own process); yields its URL."""
    from tests.helpers import MotoServer

    server = MotoServer(free_port_block(), tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
