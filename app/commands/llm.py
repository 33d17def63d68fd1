"""`adp llm up|down|status`: the embedded default model server (runtimes/llm/server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from adp.core.process import http_ok
from adp.runtimes.llm.providers import LOCAL_MODEL
from adp.runtimes.llm.server import (
    check_server_deps,
    default_port,
    find_gguf,
    managed,
    recorded_address,
    url_file,
    url_for,
)


@click.group("llm")
def llm_command() -> None:
    """The embedded local model server (SmolLM2-135M-Instruct on llama.cpp)."""


@llm_command.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default 8088 or ADP_LLM_PORT.")
@click.option("--n-ctx", type=int, default=4096, show_default=True, help="Context window.")
@click.option("--threads", type=int, default=None, help="CPU threads (llama.cpp default if unset).")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve this GGUF instead of the bundled SmolLM2.",
)
@click.option(
    "--timeout",
    type=float,
    default=180.0,
    show_default=True,
    help="Seconds to wait for the server to answer.",
)
def up(
    host: str,
    port: int | None,
    n_ctx: int,
    threads: int | None,
    model_path: str | None,
    timeout: float,
) -> None:
    """Start the server (detached) and wait until it answers; idempotent."""
    port = port or default_port()
    url = url_for(host, port)
    proc = managed(host, port, n_ctx, threads)
    pid = proc.pid()
    if pid is not None:
        click.echo(f"llm server already running (pid {pid}) at {url}")
        return
    if http_ok(f"{url}/models"):
        click.echo(f"an LLM server not started by adp already answers at {url}; leaving it be")
        return
    check_server_deps()
    gguf = Path(model_path) if model_path else find_gguf()
    proc = managed(host, port, n_ctx, threads, gguf)
    click.echo(f"starting llm server ({gguf.name}) on {url}; log: {proc.log_file}")
    pid, _ = proc.start(timeout=timeout)
    url_file().write_text(f"{host} {port}\n")
    click.echo(f"llm server running (pid {pid}) at {url} model {LOCAL_MODEL}")


@llm_command.command("down")
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
def down(grace: float) -> None:
    """Stop the server; idempotent."""
    pid = managed().stop(grace=grace)
    url_file().unlink(missing_ok=True)
    click.echo(f"llm server stopped (pid {pid})" if pid else "llm server was not running")


@llm_command.command("status")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default 8088 or ADP_LLM_PORT.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: running, answering, pid, url, model, log.",
)
@click.pass_context
def status(ctx: click.Context, host: str, port: int | None, as_json: bool) -> None:
    """running (exit 0) or stopped (exit 3), with pid, URL and model."""
    host, port = recorded_address(host, port)
    url = url_for(host, port)
    proc = managed(host, port)
    pid = proc.pid()
    answering = pid is not None and http_ok(f"{url}/models")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "running": pid is not None,
                    "answering": answering,
                    "pid": pid,
                    "url": url,
                    "model": LOCAL_MODEL,
                    "log": str(proc.log_file),
                }
            )
        )
    elif pid is None:
        click.echo(f"llm server stopped (url {url}, model {LOCAL_MODEL})")
    else:
        state = "running" if answering else "running (not answering yet)"
        click.echo(
            f"llm server {state}: pid {pid}, url {url}, model {LOCAL_MODEL}, log {proc.log_file}"
        )
    if pid is None:
        ctx.exit(3)
