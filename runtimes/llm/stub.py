"""`adp llm-stub`: a deterministic, scripted OpenAI-compatible HTTP server for tests and benchmarks.

The real openai SDK talks to it over HTTP, so the client, its retries and parsing are exercised
for real. Endpoints: POST /v1/chat/completions (JSON, or SSE chunks with `"stream": true`),
GET /v1/models, GET /health, GET /stats (request counters), POST /stats/reset.

Stateless by conversation: the reply index of a request is the number of assistant messages it
already carries, so replies do not depend on arrival order, concurrency or client retries.
Token counts are whitespace word counts (prompt: all message contents and tool-call arguments;
completion: the reply's content and tool-call arguments).

Unscripted (no rule matches) the replies finish any task in two steps:
- request without `tools` (text protocol): reply 0 is a thought plus one ```python block that
  prints repr(first 40 chars of the first user message); reply 1+ is
  "FINAL ANSWER: <last user message with its 'Observation:' prefix removed, stripped>".
- request with `tools`: reply 0 calls `python` {"code": "print(...)"} if offered, else
  `read_page` {} if offered, else the first tool with {}; reply 1+ calls `finish`
  {"answer": <last tool message content, stripped, first 200 chars>}, or answers
  "FINAL ANSWER: ..." as content when no `finish` tool is offered.

Script format (--script FILE, JSON): a list of rules, or {"rules": [...]}. Rules are tried in
order; the first whose `match` regex is found (re.search) in the first user message wins (no
`match` matches everything). `replies` is indexed by the reply index; the last one repeats.

    [{"match": "flaky", "replies": [
        [{"status": 500, "times": 2}, "first reply after two 500s"],
        {"content": null, "tool_calls": [{"name": "python", "arguments": {"code": "print(1)"}}]},
        "FINAL ANSWER: done"]},
     {"match": "slow",  "replies": [{"hang": 30}]},
     {"match": "bad",   "replies": [{"malformed": true, "times": 1}, "ok"]}]

An entry is one of:
- a string: the assistant content;
- {"content": str|null, "tool_calls": [{"name": str, "arguments": object|str, "id"?: str}],
   "finish_reason"?: str}: a reply (arguments given as a string are sent verbatim); `name` is
   any function the runtime offers, an MCP server's tool included (`kv__put`, docs/mcp.md),
   and a text-protocol reply calls one with a ```json {"tool": "kv.put", ...}``` block;
- a fault: {"status": 429|500|503|..., "times": N} (answer that HTTP error),
  {"hang": SECONDS, "times"?: N} (sleep, then go on), {"malformed": true, "times"?: N}
  (a 200 whose body is not JSON). Without "times" a fault fires on every request.
- a list of entries: faults followed by the reply they guard.
Faults are counted on the server per (rule, reply index, entry); once a fault has fired `times`
times, the request falls through to the next entry. Faults at the top level of `replies` are
attached to the reply that follows them (so [{"status": 500, "times": 2}, "ok"] is ONE slot:
two 500s, then "ok" at reply index 0). A slot with only faults ends in the default reply.
`--latency` adds a fixed delay to every chat reply.

Token ids and logprobs, as vLLM's OpenAI server gives them: a request with
`"return_token_ids": true` gets `prompt_token_ids` (top level) and `choices[0].token_ids`, one
with `"logprobs": true` gets `choices[0].logprobs.content`, from a toy tokenizer and chat
template (runtimes/llm/stub_tokens.py: the same text is the same ids in every process).
`--chat-template rewrite-history` makes the template rewrite earlier turns, as some real ones
do, so that a prompt no longer extends the previous prompt and completion.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from adp.runtimes.llm import stub_tokens
from adp.runtimes.llm.stub_replies import (
    Slot,
    completion_words,
    default_reply,
    first_user,
    load_script,
    prompt_words,
    reply_message,
)

DEFAULT_MODEL = "stub-model"


def _error(status: int, message: str, kind: str = "stub_fault") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return web.json_response(body, status=status)


# --------------------------------------------------------------------------- server


class StubServer:
    """The stub as an object: `url = await StubServer(script=...).start()` inside a loop, or
    `with StubServer(...).in_thread() as url:` from sync code (own loop in a daemon thread)."""

    def __init__(
        self,
        script: Any = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
        template: str = "plain",
    ) -> None:
        if template not in stub_tokens.TEMPLATES:
            raise ValueError(
                f"chat template {template!r}: one of {', '.join(stub_tokens.TEMPLATES)}"
            )
        self.rules = load_script(script)
        self.template = template
        self.latency = latency
        self.host, self.port, self.model = host, port, model
        self.stats: dict[str, int] = {}
        self._fired: dict[tuple[int, int, int], int] = {}
        self._seq = 0
        self.last_auth: str | None = None  # in-process only (tests check a key was sent)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/stats/reset", self._reset)
        return app

    async def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StubServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="llm-stub", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.base_url

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = self._loop = None

    @contextmanager
    def in_thread(self) -> Iterator[str]:
        url = self.start_in_thread()
        try:
            yield url
        finally:
            self.stop_thread()

    # ---- counters
    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    # ---- handlers
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": self.model})

    async def _models(self, request: web.Request) -> web.Response:
        self._count("models")
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "adp-stub"}
                ],
            }
        )

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def _reset(self, request: web.Request) -> web.Response:
        self.stats.clear()
        self._fired.clear()
        return web.json_response({})

    def _pick(self, messages: list[dict[str, Any]], index: int) -> tuple[int, int, Slot] | None:
        first = first_user(messages)
        for r, rule in enumerate(self.rules):
            if rule.pattern is None or rule.pattern.search(first):
                if not rule.slots:
                    return None
                s = min(index, len(rule.slots) - 1)
                return r, s, rule.slots[s]
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self._count("chat_requests")
        self.last_auth = request.headers.get("Authorization")
        try:
            body = await request.json()
            messages = body["messages"]
            assert isinstance(messages, list)
        except Exception:
            self._count("bad_requests")
            return _error(400, "body must be JSON with a 'messages' list", "invalid_request_error")
        tools = body.get("tools") or None
        index = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        if self.latency:
            await asyncio.sleep(self.latency)
        reply: Any = None
        picked = self._pick(messages, index)
        if picked is not None:
            r, s, slot = picked
            for f, fault in enumerate(slot.faults):
                key = (r, s, f)
                times = fault.get("times")
                if times is not None and self._fired.get(key, 0) >= int(times):
                    continue
                self._fired[key] = self._fired.get(key, 0) + 1
                self._count("faults")
                if "hang" in fault:
                    await asyncio.sleep(float(fault["hang"]))
                    continue
                if fault.get("malformed"):
                    return web.Response(
                        status=200,
                        text='{"id": "chatcmpl-broken", "choices": [',
                        content_type="application/json",
                    )
                status = int(fault["status"])
                return _error(
                    status,
                    f"stub fault {status}",
                    "rate_limit_error" if status == 429 else "server_error",
                )
            reply = slot.reply
        if reply is None:
            reply = default_reply(messages, tools, index)
        msg, finish_reason = reply_message(reply, index)
        self._seq += 1
        self._count("replies")
        prompt, completion = prompt_words(messages), completion_words(msg)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        model = body.get("model") or self.model
        cid, created = f"chatcmpl-stub-{self._seq}", int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(
                request, cid, created, model, msg, finish_reason, usage if include_usage else None
            )
        choice = {"index": 0, "message": msg, "logprobs": None, "finish_reason": finish_reason}
        reply_body = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage,
            "system_fingerprint": "adp-stub",
        }
        self._tokens(body, messages, msg, reply_body)
        return web.json_response(reply_body)

    def _tokens(
        self,
        request: dict[str, Any],
        messages: list[dict[str, Any]],
        msg: dict[str, Any],
        reply: dict[str, Any],
    ) -> None:
        """Token ids and logprobs where the request asks for them, as vLLM answers."""
        choice = reply["choices"][0]
        if request.get("return_token_ids") or request.get("logprobs"):
            self._count("token_requests")
            completion = stub_tokens.completion_ids(msg)
        if request.get("return_token_ids"):
            reply["prompt_token_ids"] = stub_tokens.prompt_ids(messages, self.template)
            choice["token_ids"] = completion
        if request.get("logprobs"):
            choice["logprobs"] = stub_tokens.completion_logprobs(completion)

    async def _stream(
        self,
        request: web.Request,
        cid: str,
        created: int,
        model: str,
        msg: dict[str, Any],
        finish_reason: str,
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(
            delta: dict[str, Any],
            finish: str | None = None,
            use: dict[str, int] | None = None,
            choices: bool = True,
        ) -> None:
            chunk: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                if choices
                else [],
            }
            if use is not None:
                chunk["usage"] = use
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        content = msg.get("content") or ""
        for piece in re.findall(r"\S+\s*|\s+", content):
            await send({"content": piece})
        for j, call in enumerate(msg.get("tool_calls", [])):
            await send({"tool_calls": [{"index": j, **call}]})
        await send({}, finish_reason)
        if usage is not None:
            await send({}, use=usage, choices=False)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
