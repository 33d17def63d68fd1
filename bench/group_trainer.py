"""A trainer for bench part p: consumes groups with adp.client's GroupStream, acknowledging
each at once (no training) and committing every COMMIT_EVERY acknowledgements (a GRPO step of
that many groups), and writes one line per group: "<unix time> <samples> <task_id>".

    python -m bench.group_trainer BOOTSTRAP GROUP earliest|latest follow|once OUT COMMIT_EVERY
"""

from __future__ import annotations

import asyncio
import sys
import time

from adp.client import GroupStream


async def main(
    bootstrap: str, group: str, start: str, mode: str, out: str, commit_every: str
) -> None:
    async with GroupStream(
        bootstrap,
        group,
        start=start,
        follow=mode == "follow",
        deadline=3600,
        commit_every=int(commit_every),
    ) as stream:
        await stream.wait_assigned()
        with open(out, "a", encoding="utf-8") as log:
            log.write(f"{time.time():.3f} 0 ready\n")
            log.flush()
            async for g in stream:
                log.write(f"{time.time():.3f} {len(g.samples)} {g.task_id}\n")
                log.flush()
                stream.ack(g)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
