"""Shared fixtures. The `kafka` fixture is a real Apache Kafka broker (KRaft) started from the
project's own jars for the whole test session, on a free port, with its own ADP_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adp.app.site_server import SiteServer
from adp.runtimes.tools.browser import BrowserPool
from adp.streams.kafka.broker.server import KafkaCluster, free_port_block

# The suite's pages are served on 127.0.0.1 (the demo site, each test's own servers): the
# browser's egress policy, which keeps browsers off loopback addresses, allows that address in
# this process and every `adp` process a test starts. The egress tests give their browsers a
# policy of their own (tests/test_browser_egress.py).
os.environ.setdefault("ADP_BROWSER_EGRESS_ALLOW", "127.0.0.1")


@pytest.fixture(scope="session")
def adp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adp-home")


@pytest.fixture(scope="module")
def kafka(adp_home: Path, request: pytest.FixtureRequest) -> KafkaCluster:
    """A fresh single-node cluster with the platform's topics for each test module, so the
    consumer groups, offsets and Faust tables of one module never leak into another."""
    cluster = KafkaCluster(
        home=adp_home,
        bootstrap=f"127.0.0.1:{free_port_block()}",
        name=request.module.__name__.rsplit(".", 1)[-1],
    )
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
