"""What an LLM call's failure says, against real sockets and servers: a refused connection, a
failed DNS lookup, a failed TLS handshake, a timeout with the time really waited, an HTTP error
with the provider's own message; and which of them are outages (the runtime pauses) rather
than failures of the request."""

from __future__ import annotations

import re
import socket

import httpx2
import openai
import pytest

from adp.runtimes.llm.client import LLMClient, LLMError, LlmUnavailable, RetryPolicy
from adp.runtimes.llm.failures import endpoint, provider_message, status_failure
from adp.runtimes.llm.providers import Provider
from adp.runtimes.llm.stub import StubServer

ONCE = RetryPolicy(attempts=1, base=0.001, cap=0.001)
ASK = [{"role": "user", "content": "x"}]


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def failure_of(base_url: str, **kw) -> LLMError:
    client = LLMClient([Provider("p", base_url, "m")], retry=kw.pop("retry", ONCE), **kw)
    try:
        with pytest.raises(LLMError) as info:
            await client.chat(ASK)
        return info.value
    finally:
        await client.aclose()


async def test_a_refused_connection_says_so_not_timed_out():
    port = closed_port()
    error = await failure_of(f"http://127.0.0.1:{port}/v1", timeout=60)
    assert isinstance(error, LlmUnavailable)
    assert str(error) == f"LLM endpoint unavailable: p: connection refused by 127.0.0.1:{port}"


async def test_a_failed_dns_lookup_names_the_host():
    error = await failure_of("http://adp-no-such-host.invalid/v1")
    assert isinstance(error, LlmUnavailable)
    assert "p: DNS lookup of adp-no-such-host.invalid failed (" in str(error)


async def test_a_failed_tls_handshake_says_tls():
    async with StubServer() as plain:  # speaks HTTP, not TLS
        error = await failure_of(plain.base_url.replace("http://", "https://"))
    assert isinstance(error, LlmUnavailable)
    assert f"p: TLS with 127.0.0.1:{plain.port} failed (" in str(error)


async def test_a_timeout_gives_the_time_really_waited():
    async with StubServer(script=[{"replies": [{"hang": 60}]}]) as hanging:
        error = await failure_of(hanging.base_url, timeout=0.3)
    assert isinstance(error, LlmUnavailable)
    waited = re.search(r"no reply from 127\.0\.0\.1:\d+ within (\d+\.\d)s", str(error))
    assert waited, str(error)
    assert 0.3 <= float(waited.group(1)) < 60


async def test_an_http_error_carries_the_providers_message_and_its_kind():
    async with StubServer(script=[{"replies": [{"status": 503}]}]) as overloaded:
        error = await failure_of(
            overloaded.base_url, retry=RetryPolicy(attempts=2, base=0.001, cap=0.001)
        )
    assert isinstance(error, LlmUnavailable)
    assert str(error) == "LLM endpoint unavailable: p: HTTP 503: stub fault 503 (2 tries)"
    assert status_failure(429, "slow down").outage and status_failure(404, "no model").outage
    bad = status_failure(400, "context too long")
    assert not bad.outage and not bad.retry and str(bad) == "HTTP 400: context too long"


def test_the_providers_own_words_are_taken_from_the_error_body():
    request = httpx2.Request("POST", "http://h/v1/chat/completions")
    response = httpx2.Response(401, request=request)
    body = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
    exc = openai.AuthenticationError("Error code: 401 - ...", response=response, body=body)
    assert provider_message(exc) == "Incorrect API key provided"
    assert endpoint("https://api.example.com/v1") == "api.example.com:443"


async def test_the_probe_raises_while_down_and_names_the_provider_once_up():
    port = closed_port()
    client = LLMClient([Provider("p", f"http://127.0.0.1:{port}/v1", "m")], retry=ONCE)
    with pytest.raises(LlmUnavailable, match="connection refused"):
        await client.probe()
    await client.aclose()
    async with StubServer(port=port) as back:
        client = LLMClient([Provider("p", back.base_url, "m")], retry=ONCE)
        assert await client.probe() == "p"
        await client.aclose()
