"""A tiny static file server for the project's test website (site/), on 127.0.0.1.

In-process (tests, the demo):

    with SiteServer() as base_url:          # a free port; base_url ends with "/"
        ...                                  # http://127.0.0.1:PORT/index.html etc.

    server = SiteServer(port=8090); url = server.start(); ...; server.stop()

As a process: `python -m adp.app.site_server --port 8090 [--root DIR]`.
The site is plain HTML + JS (search, paged list, contact form); no server code runs for it.
"""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from adp.core.settings import settings

SHIPPED_SITE = Path(__file__).resolve().parent / "site"


def site_dir() -> Path:
    return settings().site.dir or SHIPPED_SITE


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        if settings().site.log:
            super().log_message(format, *args)

    def end_headers(self) -> None:
        # Every task must see the page as served now, never a cached copy.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # the browser went away mid-reply
            return
        super().handle_error(request, client_address)


class SiteServer:
    """Serve `root` (default: the repo's site/) on host:port (0 picks a free port)."""

    def __init__(self, root: str | Path | None = None, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root) if root else site_dir()
        if not (self.root / "index.html").is_file():
            raise FileNotFoundError(f"no index.html in site directory {self.root}")
        self.host, self.port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> str:
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._httpd = _Server((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="site-server", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int, root: str | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Generator form for fixtures: yields the base URL, stops on close."""
    server = SiteServer(root, host, port)
    try:
        yield server.start()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the ADP test website (site/).")
    parser.add_argument("--port", type=int, default=settings().site.port)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", default=None, help="directory to serve [site/]")
    args = parser.parse_args(argv)
    server = SiteServer(args.root, args.host, args.port)
    handler = functools.partial(_QuietHandler, directory=str(server.root))
    httpd = _Server((args.host, args.port), handler)
    print(
        f"site server on http://{args.host}:{httpd.server_address[1]}/ serving {server.root}",
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
