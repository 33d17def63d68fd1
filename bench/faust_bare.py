"""`python -m bench.faust_bare BOOTSTRAP COUNT`: a Faust app whose one agent only counts the
events of adp.steps (stream.events(), no work), then prints `rate=<events/s>` and exits: the
ceiling Faust's own per-message path sets on this machine (robinhood/faust#563)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid


def main() -> None:
    import asyncio

    import faust
    from faust import Worker

    from adp.streams.kafka import clients
    from adp.streams.kafka.admin import partition_counts

    bootstrap, count = sys.argv[1], int(sys.argv[2])
    partitions = asyncio.run(partition_counts(bootstrap, ["adp.steps"]))["adp.steps"]
    app = faust.App(
        f"bench-faust-bare-{uuid.uuid4().hex[:8]}",
        **clients.faust_settings(bootstrap),
        store="memory://",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        datadir=tempfile.mkdtemp(prefix="faust-bare-"),
        topic_partitions=partitions,
    )
    topic = app.topic("adp.steps", key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "t": 0.0}

    async def count_events(stream):
        async for _ in stream.events():
            if not seen["n"]:
                seen["t"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] >= count:
                rate = (seen["n"] - 1) / (time.perf_counter() - seen["t"])
                print(f"events={seen['n']} rate={rate:.1f}", flush=True)
                os._exit(0)

    app.agent(topic, name="count")(count_events)
    worker = Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
