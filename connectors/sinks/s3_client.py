"""The S3 client the sink and the readers share: how it is configured (the sink retries itself,
with jitter, so botocore's own retries are off) and which failures are worth another try."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from adp.core.settings import settings

# Error codes S3 and S3-compatible servers use for "try again later".
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "ServerBusy",
        "PriorRequestNotComplete",
        "OperationAborted",
        "500",
        "502",
        "503",
        "504",
    }
)


def create_client(
    endpoint_url: str | None, region: str, timeout: float = 30.0, attempts: int = 1
) -> Any:
    """An aiobotocore S3 client context manager, configured alike for the sink and the readers
    (connectors/sinks/stored.py). `attempts=1`: the sink retries itself, with jitter."""
    config = AioConfig(
        retries={"total_max_attempts": attempts},
        # Plain Content-MD5 rather than the newer default CRC trailers, which some
        # S3-compatible servers do not speak.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return get_session().create_client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )


def default_endpoint() -> str | None:
    return settings().s3.endpoint_url


def default_region() -> str:
    return settings().s3.region


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return str(err.get("Code", "")) in _RETRYABLE_CODES or status == 429 or status >= 500
    if isinstance(exc, NoCredentialsError):
        return False
    # Endpoint not reachable, connection reset/closed, connect/read timeouts, proxy errors.
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    return isinstance(exc, (asyncio.TimeoutError, OSError, aiohttp.ClientError))


def describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return f"{err.get('Code', '?')} (HTTP {status}): {err.get('Message') or exc}"
    return f"{type(exc).__name__}: {exc}"


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str((exc.response.get("Error", {}) or {}).get("Code", ""))
    return ""
