"""LLMClient: the runtimes' Model, through the openai SDK against any OpenAI-compatible endpoint.

One `chat()` walks the provider chain (providers.py: only the providers configured for the
run): per provider, up to `attempts` tries with exponential backoff and full jitter on
connection errors, timeouts, 429, 5xx and unparseable replies; then the next provider. A
provider that exhausted its tries is put last for `cooldown` seconds so later calls do not pay
for it again. Each try has a per-call timeout. The SDK's own retries are off (max_retries=0):
retries are ours, counted per outcome (failures.py says what each failure was: connection
refused, DNS, TLS, a timeout with the time waited, an HTTP status with the provider's message).
When every provider ended on an outage (failures.py) the call raises LlmUnavailable, which the
runtime answers by pausing (streams/runtime/breaker.py), not by failing the task; `probe()`
tells it when an endpoint answers again. Logs say when a provider goes down and comes back,
not every try.

Speed (issue 13): one AsyncOpenAI per provider per event loop, on the SDK's aiohttp transport
(`openai[aiohttp]`) with a connection pool sized to the runtime's concurrency, and the request
goes through the SDK's `post` with the raw JSON body kept as the exchange's response: the SDK's
typed `chat.completions.create` (request transform, response model, model_dump) cost about
three times the CPU of the HTTP exchange itself, and a runtime at concurrency 64 spent its core
there instead of waiting on the LLM. Status errors, timeouts and connection errors are still the
SDK's exceptions.

Every reply carries an LlmExchange (request messages/tools/params, the raw response dict, tokens,
latency, cached). An optional LLMCache answers exact repeats without a request. An optional
AdaptiveLimit (AIMD, core/limit.py) hears about 429s and successes; the runtime consumer gates tasks
with it. API keys never reach logs, exceptions, exchanges or reprs (they live in providers.Secret).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from adp.core.errors import DependencyOutage
from adp.core.limit import AdaptiveLimit
from adp.core.metrics import LLM_COST, LLM_LATENCY, LLM_REQUESTS, LLM_TOKENS
from adp.core.pricing import Pricer
from adp.core.settings import flag, settings
from adp.runtimes.base import CURRENT_SAMPLING, ModelReply
from adp.runtimes.llm.cache import LLMCache, fingerprint
from adp.runtimes.llm.failures import CallFailure, classify, summarize
from adp.runtimes.llm.providers import Provider, resolve_providers
from adp.runtimes.llm.replies import parse_reply, snapshot
from adp.runtimes.llm.tokens import TokenCapture

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """Every provider in the chain failed (or the reply was unusable)."""


class LlmUnavailable(DependencyOutage, LLMError):
    """Every provider of the chain is unreachable, refuses us or stays overloaded past its
    retries: an outage of the endpoint, not a failure of the request."""


# --------------------------------------------------------------------------- client


@dataclass
class RetryPolicy:
    attempts: int = 4  # tries per provider
    base: float = 0.5  # first backoff ceiling, seconds
    cap: float = 8.0  # largest backoff ceiling

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt))."""
        return random.uniform(0.0, min(self.cap, self.base * (2**attempt)))


class LLMClient:
    """adp.runtimes.base.Model over a provider chain."""

    def __init__(
        self,
        providers: Sequence[Provider] | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        params: dict[str, Any] | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        cache: LLMCache | None = None,
        limit: AdaptiveLimit | None = None,
        cooldown: float = 30.0,
        connections: int = 100,
    ) -> None:
        self.providers = list(providers) if providers is not None else resolve_providers()
        if not self.providers:
            raise ValueError("LLMClient needs at least one provider")
        self.params: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            **(params or {}),
        }
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.limit = limit
        self.cooldown = cooldown
        # HTTP connections per provider: a runtime sizes this to its concurrency
        self.connections = max(1, connections)
        self._clients: dict[tuple[str, int], openai.AsyncOpenAI] = {}
        self._price = Pricer()  # ADP_PRICES, read at the first call
        self._down_until: dict[str, float] = {}
        self.tokens = TokenCapture.from_settings()  # token ids and logprobs (tokens.py)

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.providers)
        return f"LLMClient(providers=[{names}], params={self.params}, cache={self.cache!r})"

    def describe(self) -> str:
        """The chain and its generation settings in words, for a start-up line (never a key):
        which model a run will ask is the first thing a user checks."""
        chain = ", failing over to ".join(p.describe() for p in self.providers)
        return (
            f"{chain}; max_tokens {self.params['max_tokens']}, temperature "
            f"{self.params['temperature']:g}, timeout {self.timeout:g}s"
        )

    def _redact(self, text: str) -> str:
        for p in self.providers:
            if p.api_key is not None and p.api_key.reveal():
                text = text.replace(p.api_key.reveal(), "***")
        return text

    def _client(self, provider: Provider) -> openai.AsyncOpenAI:
        # per event loop too: an aiohttp session belongs to the loop it was made in
        key = (provider.name, id(asyncio.get_running_loop()))
        client = self._clients.get(key)
        if client is None:
            limits = httpx2.Limits(
                max_connections=self.connections, max_keepalive_connections=self.connections
            )
            client = openai.AsyncOpenAI(
                base_url=provider.base_url,
                api_key=provider.key(),
                max_retries=0,
                timeout=self.timeout,
                http_client=openai.DefaultAioHttpClient(limits=limits, timeout=self.timeout),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        here = id(asyncio.get_running_loop())
        for (_, loop), client in clients.items():
            if loop == here:  # a session of a loop that is gone went with it
                await client.close()
        if self.cache is not None:
            self.cache.close()

    def _order(self) -> list[Provider]:
        now = time.monotonic()
        return sorted(self.providers, key=lambda p: self._down_until.get(p.name, 0.0) > now)

    # ---- Model
    def _params(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(request parameters, cache-key parameters) for a call now: the client's own, with
        the current sample's temperature/seed over them; samples > 0 are cached apart."""
        current = CURRENT_SAMPLING.get()
        params = {**self.params, **current.params}
        return params, (
            {**params, "adp_sample": current.sample_index} if current.sample_index else params
        )

    async def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ModelReply:
        params, cache_params = self._params()
        request = {
            "messages": snapshot(messages),
            "tools": snapshot(tools) if tools else None,
            **params,
        }
        order = self._order()
        if self.cache is not None:
            for provider in order:
                started = time.perf_counter()
                key = fingerprint(
                    provider.name, provider.model, messages, tools or None, cache_params
                )
                raw = self.cache.get(key)
                if raw is not None:
                    try:
                        return self._reply(
                            provider, request, raw, time.perf_counter() - started, True
                        )
                    except CallFailure:
                        log.warning("ignoring an unusable cached LLM response %s", key[:12])
        failures: list[tuple[Provider, CallFailure]] = []
        for provider in order:
            reply = await self._ask(provider, messages, tools, params, request, failures)
            if reply is not None:
                if self.cache is not None:
                    key = fingerprint(
                        provider.name, provider.model, messages, tools or None, cache_params
                    )
                    self.cache.put(key, provider.name, provider.model, reply.exchange.response)
                return reply
            self._mark_down(provider, failures[-1][1])
        raise self._failed(failures)

    async def _ask(
        self,
        provider: Provider,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
        request: dict[str, Any],
        failures: list[tuple[Provider, CallFailure]],
    ) -> ModelReply | None:
        """Up to `attempts` tries of one provider: the reply, or None with the failures noted."""
        for attempt in range(self.retry.attempts):
            try:
                raw, latency = await self._call(provider, messages, tools, params)
                reply = self._reply(provider, request, raw, latency, False)
            except CallFailure as failure:
                failures.append((provider, failure))
                LLM_REQUESTS.labels(provider.name, failure.outcome).inc()
                if failure.outcome == "rate_limited" and self.limit is not None:
                    self.limit.on_overload()
                if not failure.retry or attempt + 1 >= self.retry.attempts:
                    return None
                delay = self.retry.delay(attempt)
                log.debug(
                    "LLM %s try %d/%d failed (%s); retrying in %.2fs",
                    provider.name,
                    attempt + 1,
                    self.retry.attempts,
                    failure,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._record(provider, reply, latency)
            return reply
        return None

    def _record(self, provider: Provider, reply: ModelReply, latency: float) -> None:
        LLM_REQUESTS.labels(provider.name, "ok").inc()
        LLM_LATENCY.labels(provider.name).observe(latency)
        LLM_TOKENS.labels(provider.name, "prompt").inc(reply.exchange.prompt_tokens)
        LLM_TOKENS.labels(provider.name, "completion").inc(reply.exchange.completion_tokens)
        if reply.exchange.cost_usd:
            LLM_COST.labels(provider.name, provider.model).inc(reply.exchange.cost_usd)
        if self.limit is not None:
            self.limit.on_success()
        if self._down_until.pop(provider.name, None) is not None and len(self.providers) > 1:
            log.info("LLM provider %s answers again", provider.describe())

    def _mark_down(self, provider: Provider, failure: CallFailure) -> None:
        """Put an exhausted provider last for `cooldown` seconds. With other providers to
        fall over to, say so once, when it goes down (a lone provider's outage is the
        runtime's to report: it pauses)."""
        if provider.name not in self._down_until and len(self.providers) > 1:
            log.warning(
                "LLM provider %s failed: %s; the other configured providers go first for %gs",
                provider.describe(),
                self._redact(str(failure)),
                self.cooldown,
            )
        self._down_until[provider.name] = time.monotonic() + self.cooldown

    def _failed(self, failures: list[tuple[Provider, CallFailure]]) -> LLMError:
        said, outage = summarize([(p.name, f) for p, f in failures])
        if outage:
            return LlmUnavailable(
                self._redact(f"LLM endpoint unavailable: {said}"), "llm", probe=self.probe
            )
        return LLMError(self._redact(f"all LLM providers failed: {said}"))

    async def probe(self) -> str:
        """Return once some provider of the chain answers (GET /models: an HTTP answer other
        than 5xx, 429, 401 or 403), naming it; raise LlmUnavailable while none does."""
        failures = []
        for provider in self.providers:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    self._client(provider).get(
                        "/models", cast_to=httpx2.Response, options={"timeout": self.timeout}
                    ),
                    self.timeout + 1.0,
                )
                return provider.name
            except Exception as exc:  # classified below; nothing here may escape unnamed
                failure = classify(
                    exc,
                    base_url=provider.base_url,
                    waited=time.perf_counter() - started,
                    timeout=self.timeout,
                )
                answered = isinstance(exc, openai.APIStatusError)
                if answered and (not failure.outage or exc.status_code == 404):
                    return provider.name  # it answers, it just has no /models route
                failures.append(f"{provider.name}: {failure}")
        raise LlmUnavailable(
            self._redact("LLM endpoint unavailable: " + "; ".join(failures)), "llm", self.probe
        )

    async def _call(
        self,
        provider: Provider,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> tuple[dict[str, Any], float]:
        body: dict[str, Any] = {"model": provider.model, "messages": messages, **params}
        body.update(self.tokens.params(provider.name))
        if tools:
            body["tools"] = tools
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                self._client(provider).post(
                    "/chat/completions",
                    body=body,
                    cast_to=httpx2.Response,
                    options={"timeout": self.timeout},
                ),
                self.timeout + 1.0,
            )
            raw = json.loads(await response.aread())
            if not isinstance(raw, dict) or not raw.get("choices"):
                raise CallFailure("bad_response", "reply has no choices", retry=True, outage=False)
        except CallFailure:
            raise
        except (
            TimeoutError,
            ConnectionError,
            ValueError,
            openai.APIConnectionError,
            openai.APIStatusError,
            openai.APIResponseValidationError,
        ) as exc:
            failure = classify(
                exc,
                base_url=provider.base_url,
                waited=time.perf_counter() - started,
                timeout=self.timeout,
            )
            failure.detail = self._redact(failure.detail)
            failure.args = (failure.detail,)
            raise failure from None
        return raw, time.perf_counter() - started

    def _reply(
        self,
        provider: Provider,
        request: dict[str, Any],
        raw: dict[str, Any],
        latency: float,
        cached: bool,
    ) -> ModelReply:
        reply = parse_reply(provider.name, provider.model, request, raw, latency, cached)
        self.tokens.record(reply.exchange, raw)
        reply.exchange.cost_usd = self._price(
            provider.name,
            provider.model,
            reply.exchange.prompt_tokens,
            reply.exchange.completion_tokens,
            cached,
        )
        return reply


# --------------------------------------------------------------------------- factory


def build_model(options: dict[str, Any] | None = None) -> LLMClient:
    """The Model `adp runtime` uses: provider chain from the environment, knobs from `options`
    (keys: temperature, max_tokens, params, timeout, attempts, backoff_base, backoff_cap,
    cooldown, connections (HTTP pool per provider), cache (bool or path), limit (an
    AdaptiveLimit), providers) or ADP_LLM_* env
    (ADP_LLM_TEMPERATURE, ADP_LLM_MAX_TOKENS, ADP_LLM_TIMEOUT, ADP_LLM_ATTEMPTS, ADP_LLM_CACHE)."""
    opts = dict(options or {})
    llm = settings().llm
    cache_opt = opts.get("cache", llm.cache or "")
    cache: LLMCache | None = None
    if isinstance(cache_opt, LLMCache):
        cache = cache_opt
    elif cache_opt and (flag(cache_opt) or str(cache_opt).endswith((".sqlite3", ".db", ".sqlite"))):
        cache = LLMCache(None if flag(cache_opt) else cache_opt)
    return LLMClient(
        opts.get("providers") or resolve_providers(llm),
        temperature=float(opts.get("temperature", llm.temperature)),
        max_tokens=int(opts.get("max_tokens", llm.max_tokens)),
        params=opts.get("params"),
        timeout=float(opts.get("timeout", llm.timeout)),
        retry=RetryPolicy(
            attempts=int(opts.get("attempts", llm.attempts)),
            base=float(opts.get("backoff_base", 0.5)),
            cap=float(opts.get("backoff_cap", 8.0)),
        ),
        cache=cache,
        limit=opts.get("limit"),
        cooldown=float(opts.get("cooldown", 30.0)),
        connections=int(opts.get("connections", 100)),
    )
