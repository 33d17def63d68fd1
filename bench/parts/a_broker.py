"""The broker anchor: Kafka's own producer and consumer perf tools (kafka-tools, resolved with
Maven like the broker's jars) on the bench broker, for the record sizes the platform uses (a
~2 KB step event, a ~24 KB trajectory), acks=all, gzip like the platform's producers. The
ceiling everything else is held to; the Python client's own pace on the same records is the
figure's ratio."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench.core import Bench

KEY = "a"
NAME = "broker"
TITLE = "Broker anchor: Kafka's perf tools vs the Python client"
POM = Path(__file__).resolve().parent.parent / "kafka-tools-pom.xml"


def tools_classpath() -> str:
    from adp.core.settings import settings
    from adp.streams.kafka.broker.server import KAFKA_VERSION

    libs = settings().cache_dir / f"kafka-tools-{KAFKA_VERSION}" / "libs"
    if not (libs / ".complete").exists():
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (mvn) is needed to fetch kafka-tools")
        tmp = libs.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        (libs / ".complete").touch()
    return f"{libs}/*"


def java(cp: str, main: str, args: list[str]) -> str:
    # the serial collector: fewer JVM threads competing for a small machine's cores
    out = subprocess.run(
        ["java", "-Xmx512m", "-XX:+UseSerialGC", "-cp", cp, main, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{main} failed: {out.stderr[-2000:]}")
    return out.stdout


async def python_pace(bootstrap: str, topic: str, size: int, n: int) -> tuple[float, float]:
    """aiokafka produce (acks=all, idempotent, gzip) and consume of n records; records/s."""
    from adp.streams.kafka import clients
    from adp.streams.kafka.reader import capture_range, open_consumer, read_range, topic_partitions

    producer = await clients.start(
        clients.producer(bootstrap, client_id="adp-bench", linger_ms=20, max_batch_size=512 * 1024)
    )
    payload = os.urandom(size // 2).hex().encode()[:size]
    t0 = time.perf_counter()
    try:
        pending = [await producer.send(topic, payload, key=str(i).encode()) for i in range(n)]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    produced = n / (time.perf_counter() - t0)
    consumer = await open_consumer(bootstrap)
    try:
        rng = await capture_range(consumer, await topic_partitions(bootstrap, topic), None)
        t0 = time.perf_counter()
        read = await read_range(consumer, rng, lambda tp, recs: None)
        consumed = read / (time.perf_counter() - t0)
    finally:
        await consumer.stop()
    return produced, consumed


async def run(bench: Bench) -> None:
    from adp.core.settings import settings
    from adp.streams.kafka.admin import ensure_topics
    from adp.streams.kafka.topics import TopicSpec

    cp = tools_classpath()
    for size, n in ((2048, bench.size(100_000, 20_000)), (24_576, bench.size(5_000, 2_000))):
        java_topic, py_topic = f"bench.perf.java.{size}", f"bench.perf.py.{size}"
        limit = {"max.message.bytes": str(settings().max_message_bytes)}
        await ensure_topics(
            bench.bootstrap, specs=[TopicSpec(java_topic, 6, limit), TopicSpec(py_topic, 6, limit)]
        )
        out = java(
            cp,
            "org.apache.kafka.tools.ProducerPerformance",
            [
                "--topic",
                java_topic,
                "--num-records",
                str(n),
                "--record-size",
                str(size),
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={bench.bootstrap}",
                "acks=all",
                "compression.type=gzip",
                "linger.ms=20",
                "batch.size=524288",
            ],
        )
        produced = float(re.findall(r"([\d.]+) records/sec", out)[-1])
        out = java(
            cp,
            "org.apache.kafka.tools.ConsumerPerformance",
            [
                "--bootstrap-server",
                bench.bootstrap,
                "--topic",
                java_topic,
                "--messages",
                str(n),
                "--timeout",
                "300000",
            ],
        )
        consumed = _consumer_rate(out)
        py_prod, py_cons = await python_pace(bench.bootstrap, py_topic, size, n)
        label = f"{size // 1024} KiB records"
        bench.figure(
            KEY,
            f"aiokafka produce, {label}",
            py_prod,
            "records/s",
            "kafka-producer-perf-test",
            produced,
        )
        bench.figure(
            KEY,
            f"aiokafka consume, {label}",
            py_cons,
            "records/s",
            "kafka-consumer-perf-test",
            consumed,
        )
    bench.shared["broker"] = True


def _consumer_rate(out: str) -> float:
    """ConsumerPerformance prints a CSV header and one summary line; fetch.nMsg.sec is the
    rate while fetching (nMsg.sec also counts the consumer group's join)."""
    lines = [line for line in out.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if "nMsg.sec" in line)
    columns = [c.strip() for c in lines[header].split(",")]
    values = [v.strip() for v in lines[-1].split(",")]
    return float(values[columns.index("fetch.nMsg.sec")])
