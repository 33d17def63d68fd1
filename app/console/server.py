"""The console's web server (aiohttp): the page and its static files, a small JSON API and two
Server-Sent Event streams.

    GET /                           the page (app/console/static/, shipped in the package)
    GET /api/live                   SSE: config, broker, overview, index, dlq (full states)
    GET /api/steps?type=&task=&runtime=&lane=&outcome=failed|succeeded
                                    SSE: step events passing that `adp tail` filter
    GET /api/overview               the latest overview and broker state, once
    GET /api/trajectories?type=&success=true|false&verified=passed|failed|error|unverified
                         &q=&offset=&limit=
                                    one page of the stored trajectories, newest first
    GET /api/trajectories/{key}     one whole trajectory document (key: the task_id, or
                                    "<task_id>/<i>" for sample i of a task run k times), as
                                    stored: a step's LLM request may hold only the messages it
                                    added to an earlier step's (prefix_step)
    GET /api/trajectories/{key}?request={step_id}
                                    that step's LLM request whole (schemas/conversation.py)
    GET /api/artifacts/{task_id}/step-{n}/{name}
                                    a file a step wrote, stored beside the trajectory
    GET /api/dlq                    the newest dead letters with their reasons

Every response carries a strict Content-Security-Policy (scripts and styles from this server
only, no inline code), as a second wall behind the page's own rule of showing data only as
text. Bound to a loopback address, the server answers only requests whose Host header names
a loopback host, so a web page elsewhere cannot read it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from adp import __version__
from adp.app.console.hub import CLOSED, Hub, Subscription
from adp.app.console.index import VERDICTS, TrajectoryIndex, cache_file_for
from adp.app.console.live_steps import LiveSteps
from adp.app.console.monitor import Monitor
from adp.connectors.sinks.base import is_artifact_name
from adp.connectors.sinks.stored import open_store
from adp.schemas.conversation import ConversationError, full_step_documents
from adp.streams.inspection.tail import StepFilter
from adp.streams.kafka import topics
from adp.streams.kafka.clients import Conn, connection
from adp.streams.kafka.topics import LANE_NAMES

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
KEEP_ALIVE = 15.0  # seconds between SSE comments, so a gone page is noticed
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LOOPBACK = ("localhost", "::1")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # not SVG


@dataclass
class ConsoleConfig:
    bootstrap: Conn  # Settings, or a bootstrap string (adp.streams.kafka.clients)
    trajectories: str  # a folder (absolute) or s3://bucket/prefix
    home: Path | None = None  # ADP_HOME: the index cache lives under it (None: no cache)
    host: str = "127.0.0.1"
    port: int = 8050
    interval: float = 2.0
    aggregator_group: str = topics.AGGREGATOR_GROUP


class Console:
    """The running console: background readers plus the web app. `start()` / `close()`."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.hub = Hub()
        self.monitor = Monitor(config.bootstrap, self.hub, config.interval, config.aggregator_group)
        self.steps = LiveSteps(config.bootstrap)
        self.store = open_store(config.trajectories)
        cache = cache_file_for(config.home, config.trajectories) if config.home else None
        self.index = TrajectoryIndex(
            self.store, cache, on_change=lambda state: self.hub.publish("index", state)
        )
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.runner: web.AppRunner | None = None
        self.port = config.port
        self.hub.publish(
            "config",
            {
                "bootstrap": connection(config.bootstrap).describe(),
                "version": __version__,
                "trajectories": config.trajectories,
                "aggregator_group": config.aggregator_group,
            },
        )

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), shutdown_timeout=2.0, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real one when port=0
        for name, job in (
            ("monitor", self.monitor.run(self.stop)),
            ("steps", self.steps.run(self.stop)),
            ("index", self.index.run(self.stop)),
        ):
            self.tasks.append(asyncio.create_task(self._supervise(name, job)))

    async def _supervise(self, name: str, job) -> None:
        """The readers retry on their own; this only makes sure a bug in one is logged
        instead of silently ending its updates."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the console's %s reader stopped", name)

    async def close(self) -> None:
        self.stop.set()
        self.hub.close()
        self.steps.hub.close()
        _done, pending = await asyncio.wait(self.tasks, timeout=10) if self.tasks else ((), ())
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runner is not None:
            await self.runner.cleanup()
        await self.store.close()

    # ---- the app -------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self.page)
        app.router.add_get("/api/live", self.live)
        app.router.add_get("/api/steps", self.live_steps)
        app.router.add_get("/api/overview", self.overview)
        app.router.add_get("/api/trajectories", self.trajectories)
        app.router.add_get("/api/trajectories/{key:.+}", self.trajectory)
        app.router.add_get("/api/artifacts/{name:.+}", self.artifact)
        app.router.add_get("/api/dlq", self.dead_letters)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if _loopback(self.config.host) and not _loopback(request.url.host or ""):
            return web.Response(
                status=403,
                text="the console answers on a loopback host "
                "only; open it as http://127.0.0.1:PORT/",
            )
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def page(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def overview(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "broker": self.hub.latest.get("broker"),
                "overview": self.hub.latest.get("overview"),
                "index": self.index.state(),
            }
        )

    async def live(self, request: web.Request) -> web.StreamResponse:
        return await _sse(request, self.hub.subscribe())

    async def live_steps(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        lane = q.get("lane") or None
        if lane not in (None, *LANE_NAMES):
            raise web.HTTPBadRequest(text=f"lane is one of {', '.join(LANE_NAMES)}")
        keep = StepFilter(
            frozenset(t.strip() for t in q.getall("task", []) if t.strip()),
            q.get("type") or None,
            q.get("runtime") or None,
            {"failed": False, "succeeded": True}.get(q.get("outcome") or ""),
            lane,
        )
        return await _sse(request, self.steps.subscribe(keep))

    async def trajectories(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", 50))
        except ValueError:
            raise web.HTTPBadRequest(text="offset and limit are whole numbers") from None
        success = {"true": True, "false": False}.get(q.get("success", ""))
        verified = q.get("verified") or None
        if verified not in (None, *VERDICTS):
            raise web.HTTPBadRequest(text=f"verified is one of {', '.join(VERDICTS)}")
        return web.json_response(
            self.index.page(q.get("type") or None, success, verified, q.get("q"), offset, limit),
            dumps=_dumps,
        )

    async def trajectory(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        doc = await self.index.document(key)
        if doc is None:
            raise web.HTTPNotFound(text=f"no stored trajectory {key!r}")
        if "request" in request.query:
            return web.json_response(_full_request(doc, request.query["request"]), dumps=_dumps)
        return web.json_response(doc, dumps=_dumps)

    async def artifact(self, request: web.Request) -> web.Response:
        """A step's file, as the sink stored it. Code in the sandbox wrote it, so nothing in
        it may run here: images are sent as images, text as plain text, anything else (HTML,
        SVG, ...) as a download, and every answer carries a sandboxing CSP."""
        name = request.match_info["name"]
        if not is_artifact_name(name) or any(p in ("", ".", "..") for p in name.split("/")):
            raise web.HTTPNotFound(text="artifact names look like <task_id>/step-<n>/<file>")
        try:
            data = await self.store.read(name)
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound(text=f"no stored artifact {name!r}") from None
        guessed = mimetypes.guess_type(name)[0] or ""
        headers = {
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=300",
        }
        if guessed in IMAGE_TYPES:
            kind = guessed
        elif guessed.startswith("text/") or guessed in ("application/json", "application/xml"):
            kind = "text/plain; charset=utf-8"
        else:
            kind = "application/octet-stream"
            headers["Content-Disposition"] = "attachment; filename*=UTF-8''" + quote(
                name.rsplit("/", 1)[-1]
            )
        return web.Response(body=data, headers={**headers, "Content-Type": kind})

    async def dead_letters(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"total": self.monitor.dlq_total, "items": list(reversed(self.monitor.dead_letters))},
            dumps=_dumps,
        )


def _loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def _full_request(doc: dict, step: str) -> object:
    """The LLM request of one step of a trajectory document, whole."""
    steps = doc.get("steps") if isinstance(doc.get("steps"), list) else []
    try:
        step_id = int(step)
        upto = [s for s in steps if isinstance(s, dict) and s.get("step_id", 0) <= step_id]
        found = [s for s in full_step_documents(upto) if s.get("step_id") == step_id]
    except ConversationError as exc:  # (a ValueError too)
        raise web.HTTPUnprocessableEntity(text=f"cannot rebuild the request: {exc}") from None
    except ValueError:
        raise web.HTTPBadRequest(text="request is a step_id") from None
    if not found or not isinstance(found[0].get("llm"), dict):
        raise web.HTTPNotFound(text=f"step {step_id} has no LLM request")
    return found[0]["llm"].get("request")


async def _sse(request: web.Request, sub: Subscription) -> web.StreamResponse:
    """Write a subscription's items as Server-Sent Events until the page goes or we stop."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(b"retry: 2000\n\n")  # EventSource reconnects after 2 s
        while True:
            item = await sub.get(KEEP_ALIVE)
            if item is CLOSED:
                break
            if item is None:
                await response.write(b": keep-alive\n\n")
                continue
            name, data = item
            # one line of JSON: json.dumps escapes newlines inside strings
            await response.write(f"event: {name}\ndata: {_dumps(data)}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    finally:
        sub.close()
    return response
