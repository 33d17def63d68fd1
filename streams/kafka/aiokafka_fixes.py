"""Work-arounds for aiokafka 0.14 bugs that bite when the broker is gone at shutdown. Imported
by streams/kafka/clients.py, so every client of the platform, Faust's included, runs with them.

AIOKafkaConsumer.stop() raises CancelledError (https://github.com/aio-libs/aiokafka/issues/647):
when the broker is unreachable, the fetcher's in-flight fetch task sits in its retry back-off
*inside* its `except KafkaError` handler, where cancelling it is not caught; Fetcher.close()
cancels and awaits it, and the CancelledError escapes. stop() then skips closing the client
(an "Unclosed AIOKafkaConsumer" later), our own commands die with a traceback, and Faust's
consumer thread never signals that it stopped, so the aggregator waited a full minute (mode's
shutdown_timeout) after SIGTERM, or longer. The patch finishes what close() left undone and
swallows that CancelledError unless the task calling close() is itself being cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.consumer.fetcher import Fetcher

_original_close = Fetcher.close


async def _close(self: Fetcher) -> None:
    try:
        await _original_close(self)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # a real cancellation of whoever stops the consumer
        # a pending fetch task's CancelledError, not ours: cancel and reap the rest
        for pending in list(self._pending_tasks):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


if not getattr(Fetcher.close, "_adp_patched", False):
    _close._adp_patched = True  # type: ignore[attr-defined]
    Fetcher.close = _close  # type: ignore[method-assign]
