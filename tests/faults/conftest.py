"""The broker of the outage tests (test_sink_outages.py, test_network_outages.py): one for both
modules, with a second listener behind a proxy (KafkaCluster proxies=): processes bootstrapped
at `proxied_bootstrap` talk to Kafka only through the proxy (Toxiproxy, which cuts or slows it),
the tests themselves talk to Kafka directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adp.streams.kafka.broker.server import KafkaCluster, free_port_block


@pytest.fixture(scope="package")
def cluster(adp_home: Path) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(
        home=adp_home,
        bootstrap=f"127.0.0.1:{free_port_block()}",
        name="outages",
        proxies=[f"127.0.0.1:{free_port_block()}"],
    )
    try:
        cluster.up(timeout=180)
        yield cluster
    finally:
        cluster.down()
