"""Work-arounds for aiokafka 0.14 bugs. Imported by streams/kafka/clients.py, so every client of
the platform, Faust's included, runs with them.

AIOKafkaConsumer.stop() raises CancelledError (https://github.com/aio-libs/aiokafka/issues/647):
when the broker is unreachable, the fetcher's in-flight fetch task sits in its retry back-off
*inside* its `except KafkaError` handler, where cancelling it is not caught; Fetcher.close()
cancels and awaits it, and the CancelledError escapes. stop() then skips closing the client
(an "Unclosed AIOKafkaConsumer" later), our own commands die with a traceback, and Faust's
consumer thread never signals that it stopped, so the aggregator waited a full minute (mode's
shutdown_timeout) after SIGTERM, or longer. The patch finishes what close() left undone and
swallows that CancelledError unless the task calling close() is itself being cancelled.

A consumer offering several assignors sends one JoinGroup per assignor
(https://github.com/aio-libs/aiokafka/pull/1168): the request is sent inside the loop that
collects the protocols, so the first JoinGroup offers only the first one and the next, with the
same member id and other metadata, starts another rebalance. The runtimes offer two (their lane
sticky assignor, then round robin for a rolling upgrade): two runtimes starting together kept
breaking each other's SyncGroup ("group rebalance"), hundreds of generations, a minute and more
before either got a partition. The patch sends one JoinGroup with every protocol; the rest of
the join (the answer's handling) is aiokafka's, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiokafka.errors as Errors
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, log
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.protocol.group import JoinGroupRequest

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


async def _perform_group_join(self: CoordinatorGroupRebalance):
    """aiokafka 0.14's perform_group_join with the join loop after the protocol loop."""
    if len(self._assignors) < 2:  # one assignor: the original sends one request
        return await _original_join(self)
    log.info("(Re-)joining group %s", self.group_id)
    protocols = []
    for assignor in self._assignors:
        metadata = assignor.metadata(self._subscription.topics)
        protocols.append(
            (assignor.name, metadata if isinstance(metadata, bytes) else metadata.encode())
        )
    while True:  # KIP-394: a first join without a member id is answered with one to use
        request = JoinGroupRequest(
            self.group_id,
            self._session_timeout_ms,
            self._rebalance_timeout_ms,
            self._coordinator.member_id,
            self._coordinator._group_instance_id,
            ConsumerProtocol.PROTOCOL_TYPE,
            protocols,
        )
        try:
            response = await self._coordinator._send_req(request)
        except Errors.KafkaError:
            return None  # a connection error: the coordinator lookup backs off
        if not self._subscription.active:
            return None  # the subscription changed: join again
        if Errors.for_code(response.error_code) is not Errors.MemberIdRequired:
            break
        self._coordinator.member_id = response.member_id
    return await _handle_join_response(self, response)


async def _handle_join_response(self: CoordinatorGroupRebalance, response):
    """What aiokafka 0.14 does with the JoinGroup answer, unchanged."""
    error_type = Errors.for_code(response.error_code)
    if error_type is Errors.NoError:
        self._coordinator.member_id = response.member_id
        self._coordinator.generation = response.generation_id
        log.info(
            "Joined group '%s' (generation %s) with member_id %s",
            self.group_id,
            response.generation_id,
            response.member_id,
        )
        if response.leader_id == response.member_id:
            log.info(
                "Elected group leader -- performing partition assignments using %s",
                response.group_protocol,
            )
            assignment = await self._on_join_leader(response)
        else:
            assignment = await self._on_join_follower()
        return None if assignment is None else (response.group_protocol, assignment)
    if error_type is Errors.GroupLoadInProgressError:
        await asyncio.sleep(self._retry_backoff_ms / 1000)
    elif error_type is Errors.UnknownMemberIdError:
        self._coordinator.reset_generation()
    elif error_type in (
        Errors.GroupCoordinatorNotAvailableError,
        Errors.NotCoordinatorForGroupError,
    ):
        self._coordinator.coordinator_dead()
    elif error_type in (
        Errors.InconsistentGroupProtocolError,
        Errors.InvalidSessionTimeoutError,
        Errors.InvalidGroupIdError,
    ):
        log.error("Attempt to join group failed due to fatal error: %s", error_type())
        raise error_type()
    elif error_type is Errors.GroupAuthorizationFailedError:
        raise error_type(self.group_id)
    else:
        log.error("Unexpected error in join group '%s' response: %s", self.group_id, error_type())
        raise Errors.KafkaError(repr(error_type()))
    return None


_original_join = CoordinatorGroupRebalance.perform_group_join
if not getattr(_original_join, "_adp_patched", False):
    _perform_group_join._adp_patched = True  # type: ignore[attr-defined]
    CoordinatorGroupRebalance.perform_group_join = _perform_group_join  # type: ignore[method-assign]
