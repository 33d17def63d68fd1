"""The one place Kafka clients are built: every aiokafka producer, consumer and admin client, and
the Faust app's broker settings, come from here, configured from the platform's Settings
(adp.core.settings: bootstrap, TLS, SASL, client id, message size limit).

Functions take `conf`: a Settings, or None for the environment's settings, or -- shorthand that
keeps tests and small scripts readable -- a bare bootstrap string, which means "the
environment's settings with this bootstrap" (TLS/SASL and the rest still come from ADP_* and
the config file). `connection()` does that normalisation; nothing else should.

Errors: `start()` opens a client and turns a failure into KafkaClientError, one line that says
what failed where (unreachable, TLS, authentication, authorization) and that every command
prints as is (exit code 3), instead of aiokafka's traceback and an "Unclosed AIOKafkaConsumer"
warning.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kerrors
from aiokafka.admin import AIOKafkaAdminClient

from adp.core.errors import KafkaUnavailable
from adp.core.settings import Settings, settings
from adp.streams.kafka import aiokafka_fixes  # noqa: F401 - patches applied on import

log = logging.getLogger(__name__)

Conn = Settings | str | None
C = TypeVar("C", AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient)


class KafkaClientError(KafkaUnavailable):
    """Kafka could not be used: unreachable, TLS or authentication failed, or an operation was
    not authorized. The message is one line naming the cluster (never a password); every
    command exits with code 3 on it (adp.core.errors)."""


def connection(conf: Conn = None) -> Settings:
    """Settings from `conf`: itself, the environment's (None), or the environment's with this
    bootstrap (a string)."""
    if isinstance(conf, Settings):
        return conf
    return settings(bootstrap=conf)


# ---- clients --------------------------------------------------------------------------------


def ssl_context(conf: Settings) -> ssl.SSLContext | None:
    if not conf.uses_tls:
        return None
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path: Path | None = getattr(conf, name)
        if path is not None and not path.is_file():
            raise KafkaClientError(f"{name} {path} does not exist (ADP_{name.upper()})")
    try:
        context = ssl.create_default_context(cafile=conf.ssl_cafile)
        if conf.ssl_certfile:
            context.load_cert_chain(conf.ssl_certfile, conf.ssl_keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaClientError(f"cannot load the TLS files for {conf.bootstrap}: {exc}") from None
    context.check_hostname = conf.ssl_check_hostname
    return context


def client_options(conf: Conn = None, client_id: str = "adp") -> dict[str, Any]:
    """What every aiokafka client needs to reach the cluster: servers, security, client id."""
    conf = connection(conf)
    options: dict[str, Any] = {
        "bootstrap_servers": conf.bootstrap,
        "client_id": conf.client_id or client_id,
        "security_protocol": conf.security_protocol,
    }
    if conf.uses_tls:
        options["ssl_context"] = ssl_context(conf)
    if conf.uses_sasl:
        options["sasl_mechanism"] = conf.sasl_mechanism
        options["sasl_plain_username"] = conf.sasl_username
        options["sasl_plain_password"] = conf.sasl_password.get_secret_value()
    return options


def producer(conf: Conn = None, client_id: str = "adp", **overrides: Any) -> AIOKafkaProducer:
    """An idempotent acks=all producer allowed records up to max_message_bytes."""
    conf = connection(conf)
    options = {
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "gzip",
        "linger_ms": 5,
        "max_request_size": conf.max_message_bytes,
        "request_timeout_ms": 30000,
        **overrides,
    }
    return AIOKafkaProducer(**client_options(conf, client_id), **options)


def consumer(
    *topics: str, conf: Conn = None, client_id: str = "adp", **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that can fetch the largest record the platform writes; without a group_id
    in `overrides` it joins no group and commits nothing."""
    conf = connection(conf)
    options = {
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": conf.max_message_bytes,
        "fetch_max_bytes": 2 * conf.max_message_bytes,
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **client_options(conf, client_id), **options)


def admin(conf: Conn = None, client_id: str = "adp-admin", **overrides: Any) -> AIOKafkaAdminClient:
    options = {"request_timeout_ms": 15000, **overrides}
    return AIOKafkaAdminClient(**client_options(conf, client_id), **options)


async def start(client: C, conf: Conn = None, timeout: float = 60.0) -> C:
    """Start `client`; on failure close it and raise KafkaClientError (one line)."""
    _QuietConnectionErrors.last = None
    try:
        await asyncio.wait_for(client.start(), timeout)
    except BaseException as exc:
        await close(client)
        if isinstance(exc, (Exception, asyncio.TimeoutError)) and not isinstance(
            exc, asyncio.CancelledError
        ):
            # aiokafka's "Unable to bootstrap" hides why: the last connection error says it
            cause = _QuietConnectionErrors.last
            if isinstance(exc, kerrors.KafkaConnectionError) and cause is not None:
                exc = cause
            raise explain(exc, connection(conf)) from None
        raise
    if isinstance(client, AIOKafkaConsumer):
        # let aiokafka's coordinator task start: stopping it before it ever ran raises
        # CancelledError out of consumer.stop() (aiokafka 0.14)
        await asyncio.sleep(0)
    return client


async def close(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> None:
    """Stop or close any client, also when the broker is gone; never raises but for a
    cancellation of the caller itself (streams/kafka/aiokafka_fixes.py has the CancelledError that
    aiokafka's own background tasks leaked out of stop())."""
    try:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception:
        log.debug("closing %s failed", type(client).__name__, exc_info=True)


def explain(exc: BaseException, conf: Settings, doing: str = "") -> KafkaClientError:
    """One line for a Kafka failure: what, where, and the hint that usually fixes it."""
    where = conf.describe()
    # aiokafka: "[Error 58] SaslAuthenticationFailed: why" -> "why"
    text = re.sub(r"^\[Error \d+\] ", "", str(exc)).removeprefix(f"{type(exc).__name__}: ")
    text = text or type(exc).__name__
    what = f" {doing}" if doing else ""
    message = _refusal(exc, conf, where, what, text) or _transport_failure(
        exc, conf, where, what, text
    )
    return KafkaClientError(
        message or f"Kafka at {where} failed{what}: {type(exc).__name__}: {text}"
    )


def _refusal(exc: BaseException, conf: Settings, where: str, what: str, text: str) -> str | None:
    """The broker answered and said no: an ACL, or the credentials."""
    if isinstance(exc, kerrors.TopicAuthorizationFailedError):
        return (
            f"Kafka at {where} refused{what}: not authorized on topic "
            f"{_detail(text)} (check the principal's ACLs)"
        )
    if isinstance(exc, kerrors.GroupAuthorizationFailedError):
        return (
            f"Kafka at {where} refused{what}: not authorized for consumer "
            f"group {_detail(text)} (check the principal's ACLs)"
        )
    if isinstance(
        exc, (kerrors.ClusterAuthorizationFailedError, kerrors.TransactionalIdAuthorizationFailed)
    ):
        return f"Kafka at {where} refused{what}: {text} (check the principal's ACLs)"
    if _is_auth_failure(exc):
        return (
            f"Kafka at {where} rejected the credentials of "
            f"{conf.sasl_username or 'this client'}: {text}"
        )
    return None


def _transport_failure(
    exc: BaseException, conf: Settings, where: str, what: str, text: str
) -> str | None:
    """No usable answer: TLS, a refused or closed connection, a timeout, the network."""
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return (
            f"TLS with Kafka at {where} failed: {text} (check ssl_cafile "
            f"and that the broker's listener speaks TLS)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"cannot reach Kafka at {where}: nothing listens there (is it "
            f"running, and is this the right address?)"
        )
    if isinstance(exc, kerrors.KafkaConnectionError) and text.endswith("closed"):
        return (
            f"Kafka at {where} closed the connection: does its listener expect another "
            f"security_protocol than {conf.security_protocol}?"
        )
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return (
            f"Kafka at {where} did not answer{what} in time (is it up, and "
            f"is security_protocol {conf.security_protocol} right?)"
        )
    if isinstance(exc, (kerrors.KafkaConnectionError, OSError)):
        return f"cannot reach Kafka at {where}: {_reason(text)}"
    return None


def _is_auth_failure(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (
            kerrors.SaslAuthenticationFailed,
            kerrors.AuthenticationFailedError,
            kerrors.UnsupportedSaslMechanismError,
            kerrors.IllegalSaslStateError,
        ),
    )


def _detail(text: str) -> str:
    return text.split(":", 1)[-1].strip() if ":" in text else text


def _reason(text: str) -> str:
    # aiokafka: "KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 1, <...>)]"
    text = text.removeprefix("KafkaConnectionError: ")
    if text.startswith("Unable to bootstrap"):
        return "no broker answered (is it running, and is this the right address?)"
    return text


@contextmanager
def kafka_errors(conf: Settings, doing: str = "") -> Iterator[None]:
    """`with kafka_errors(conf):` turns aiokafka errors raised inside into KafkaClientError."""
    try:
        yield
    except kerrors.KafkaError as exc:
        raise explain(exc, conf, doing) from None


# ---- Faust ----------------------------------------------------------------------------------

FAUST_FETCH_BYTES = 256 * 1024


def faust_settings(conf: Conn = None) -> dict[str, Any]:
    """faust.App keyword arguments that point it at the cluster: brokers, credentials, the
    message size limit both ways, client id."""
    import faust

    conf = connection(conf)
    out: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in conf.bootstrap.split(",") if h.strip()],
        "producer_max_request_size": conf.max_message_bytes,
        # Per partition and per poll, kept small: Faust hands an agent everything one poll
        # returned before it polls again, so with max_message_bytes (32 MiB) a partition's whole
        # backlog arrived in one poll and the other topics' records waited behind it (the
        # aggregator's sink saw no trajectory until the adp.steps backlog was drained). A record
        # larger than this still arrives: brokers return the first batch whatever its size
        # (KIP-74).
        "consumer_max_fetch_size": min(FAUST_FETCH_BYTES, conf.max_message_bytes),
    }
    if conf.client_id:
        out["broker_client_id"] = conf.client_id
    context = ssl_context(conf)
    if conf.uses_sasl:
        out["broker_credentials"] = faust.SASLCredentials(
            username=conf.sasl_username,
            password=conf.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=conf.sasl_mechanism,
        )
    elif context is not None:
        out["broker_credentials"] = faust.SSLCredentials(context)
    return out


class _QuietConnectionErrors(logging.Filter):
    """aiokafka logs every failed connection attempt at ERROR ('Unable connect to ...'); the
    platform reports an unreachable broker itself, once (KafkaClientError, /health). Kept with
    -v (adp debug logging)."""

    NOISE = ("Unable connect to", "Unable to update metadata", "Unable to request metadata")

    last: BaseException | None = None  # the latest connection error (start() reports it)

    def filter(self, record: logging.LogRecord) -> bool:
        noise = str(record.msg).startswith(self.NOISE)
        if noise and record.args and isinstance(record.args[-1], BaseException):
            _QuietConnectionErrors.last = record.args[-1]
        return not noise or logging.getLogger("adp").isEnabledFor(logging.DEBUG)


# aiokafka.client logs these on the "aiokafka" logger itself (filters do not reach children)
logging.getLogger("aiokafka").addFilter(_QuietConnectionErrors())
