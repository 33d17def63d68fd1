"""A trainer for the tests: consumes groups with adp.client's GroupStream and writes one line
per group it is handed to a log (flushed and synced before it acknowledges), "training" a
little while on each. tests/test_rl_groups.py kills it with SIGKILL mid-stream and starts it
again.

    python tests/rl_trainer.py BOOTSTRAP GROUP LOG [SECONDS_PER_GROUP]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from adp.client import GroupStream


async def main(bootstrap: str, group: str, log: str, pause: float) -> None:
    async with GroupStream(bootstrap, group, deadline=3600) as stream:
        with open(log, "a", encoding="utf-8") as out:
            async for g in stream:
                out.write(json.dumps({"group": g.task_id, "samples": sorted(g.samples)}) + "\n")
                out.flush()
                os.fsync(out.fileno())
                await asyncio.sleep(pause)  # the training step
                stream.ack(g)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4]) if len(sys.argv) > 4 else 0.0))
