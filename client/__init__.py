"""adp.client: the Python API of a trainer on the platform (docs/training.md).

    from adp.client import GroupStream, submit

    await submit(tasks, samples=8, policy_version=3)     # k samples of each task
    async with GroupStream(group="grpo", min_spread=0.1) as stream:
        async for group in stream:                        # all k samples, as the last lands
            rewards = group.rewards                       # the verdicts' scores
            rows = [s.tokens() for s in group.ordered]    # token ids, loss mask, logprobs
            stream.ack(group)                             # never delivered again

Submitting goes through the producer of `adp produce`; groups are a consumer group on
adp.trajectories that delivers every group once across crashes (client/stream.py).
"""

from adp.client.groups import Group, Sample
from adp.client.stream import GroupStream, GroupStreamError
from adp.client.submit import submit

__all__ = ["Group", "GroupStream", "GroupStreamError", "Sample", "submit"]
