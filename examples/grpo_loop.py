"""A GRPO-style consumer of the rollout bus: it trains nothing, it prints what a trainer gets.
Run `adp demo --llm stub --keep-running` (or any running platform), then this; kill it at any
moment and run it again: it goes on where it committed. README "Training with RL"."""

import asyncio

from adp.client import GroupStream, submit

TASKS = [
    {
        "task_id": f"sum-to-{n}",
        "task_type": "code",
        "description": f"Print the sum of the integers from 1 to {n}.",
        "verify": {"type": "answer", "match": "numeric", "expected": n * (n + 1) // 2},
    }
    for n in (10, 20, 30, 40, 50)
]


async def main(policy_version: int = 0) -> None:
    # 4 samples per task; submitting again after a crash adds nothing (one trajectory per key)
    await submit(TASKS, samples=4, policy_version=policy_version)
    async with GroupStream(group="grpo-demo", policy_version=policy_version) as stream:
        async for group in stream:  # all samples of one task, as soon as the last one lands
            rewards = [r or 0.0 for r in group.rewards]
            mean = sum(rewards) / len(rewards)
            advantages = [round(r - mean, 3) for r in rewards]  # GRPO: reward - group mean
            tokens = [sum(row["num_generated"] for row in s.tokens()) for s in group.ordered]
            note = "" if group.complete else f" (incomplete, missing {group.missing})"
            print(f"{group.task_id}: rewards {rewards} advantages {advantages}", end=" ")
            print(f"generated tokens {tokens}{note}", flush=True)
            stream.ack(group)  # committed before the next group: never delivered again


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # what was not acknowledged comes again on the next run
        print("stopped; run again to go on")
