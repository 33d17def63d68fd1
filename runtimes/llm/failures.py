"""Why one LLM call failed, in words a user can act on, and what to do about it.

Each failure is classified along two lines:
- `retry`: is another try of the same provider worth it (connection errors, timeouts, 429,
  5xx, 408/409, an unparseable reply), or will it get the same answer (any other 4xx)?
- `outage`: does it say the endpoint is unavailable to us (unreachable, refusing, overloaded,
  rejecting our key or not serving the model) rather than that this request was wrong? When every
  provider of the chain ends on an outage, the call raises LlmUnavailable and the runtime pauses
  instead of failing the task (streams/runtime/breaker.py).

The openai SDK's aiohttp transport (httpx2) reports every failure to connect as a connect
timeout (`APITimeoutError` over `httpx2.ConnectTimeout`): a refused connection, a failed DNS
lookup and a failed TLS handshake all read "Request timed out", at once. The cause is kept in
the exception's chain (`__cause__`/`__context__`: aiohttp's ClientConnector*Error over the OS
error), so it is read from there, and a timeout is only called one when the chain holds no
other cause; its message gives the time really waited.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import openai


class CallFailure(Exception):
    """One failed try of one provider. `outcome` is the adp_llm_requests_total label."""

    def __init__(self, outcome: str, detail: str, *, retry: bool, outage: bool) -> None:
        super().__init__(detail)
        self.outcome, self.detail, self.retry, self.outage = outcome, detail, retry, outage


def endpoint(base_url: str) -> str:
    """host:port of an endpoint, what connection errors name."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _connection_failure(exc: BaseException, where: str) -> CallFailure | None:
    """The cause of a failure to connect or to keep the connection, if the chain holds one:
    the most specific cause anywhere in the chain first (aiohttp's connector error is itself an
    OSError, above the OS error that says what happened)."""
    causes = list(_chain(exc))
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return _down("connection_refused", f"connection refused by {where}")
        if isinstance(cause, socket.gaierror) or _named(cause, "ClientConnectorDNSError"):
            reason = getattr(cause, "strerror", None) or _first_line(cause)
            host = where.rsplit(":", 1)[0]
            return _down("dns_error", f"DNS lookup of {host} failed ({reason})")
        if isinstance(cause, ssl.SSLError | ssl.CertificateError) or _named(
            cause, "ClientConnectorCertificateError", "ClientConnectorSSLError", "ClientSSLError"
        ):
            reason = getattr(cause, "reason", None) or cause
            return _down("tls_error", f"TLS with {where} failed ({_first_line(reason)})")
        if isinstance(cause, ConnectionResetError) or _named(cause, "ServerDisconnectedError"):
            return _down("connection_error", f"{where} closed the connection")
    for cause in causes:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError) and cause.errno:
            reason = cause.strerror or _first_line(cause)
            return _down("connection_error", f"cannot connect to {where} ({reason})")
    return None


def classify(exc: BaseException, *, base_url: str, waited: float, timeout: float) -> CallFailure:
    """The CallFailure an exception of one try means; `waited`: seconds the try took."""
    if isinstance(exc, CallFailure):
        return exc
    where = endpoint(base_url)
    if isinstance(exc, openai.APIStatusError):
        return status_failure(exc.status_code, provider_message(exc))
    if isinstance(exc, openai.APIConnectionError | TimeoutError | ConnectionError):
        found = _connection_failure(exc, where)
        if found is not None:
            return found
        if isinstance(exc, openai.APITimeoutError | TimeoutError):
            return _down("timeout", f"no reply from {where} within {waited:.1f}s")
        return _down("connection_error", f"connection to {where} failed ({_first_line(exc)})")
    return CallFailure(
        "bad_response", f"unparseable reply: {_first_line(exc)}", retry=True, outage=False
    )


def status_failure(status: int, message: str) -> CallFailure:
    """An HTTP error answer. 401/403/404 say the endpoint will not serve us (a revoked key, a
    model not loaded) whatever we send, so they pause the runtime like an outage; other 4xx
    are this request's fault (too long, malformed) and fail the call."""
    detail = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status == 429:
        return CallFailure("rate_limited", detail, retry=True, outage=True)
    if status >= 500 or status in (408, 409):
        return CallFailure("server_error", detail, retry=True, outage=True)
    if status in (401, 403, 404):
        return CallFailure("refused", detail, retry=False, outage=True)
    return CallFailure("client_error", detail, retry=False, outage=False)


def provider_message(exc: openai.APIStatusError, limit: int = 300) -> str:
    """The provider's own words: the error body's message where it has one."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") or inner.get("detail") or ""
    else:
        text = body if isinstance(body, str) else ""
    if not text:
        text = str(getattr(exc, "message", "") or "")
        prefix = f"Error code: {exc.status_code} - "
        text = text[len(prefix) :] if text.startswith(prefix) else text
    return _first_line(text, limit)


def summarize(failures: list[tuple[str, CallFailure]]) -> tuple[str, bool]:
    """What the providers of one call said, last failure of each with its count of tries, and
    whether every one of them ended on an outage."""
    last: dict[str, CallFailure] = {}
    tries: dict[str, int] = {}
    for name, failure in failures:
        last[name] = failure
        tries[name] = tries.get(name, 0) + 1
    said = "; ".join(
        f"{name}: {failure}" + (f" ({tries[name]} tries)" if tries[name] > 1 else "")
        for name, failure in last.items()
    )
    return said, bool(last) and all(f.outage for f in last.values())


def _down(outcome: str, detail: str) -> CallFailure:
    return CallFailure(outcome, detail, retry=True, outage=True)


def _first_line(value: object, limit: int = 300) -> str:
    lines = str(value).strip().splitlines()
    text = lines[0] if lines else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."
