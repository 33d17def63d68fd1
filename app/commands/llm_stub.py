"""`adp llm-stub`: the scripted OpenAI-compatible server (runtimes/llm/stub.py) from the command
line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import click

from adp.core.settings import settings
from adp.runtimes.llm.stub import DEFAULT_MODEL, StubServer
from adp.runtimes.llm.stub_tokens import TEMPLATES


@click.command("llm-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=int,
    default=lambda: settings().llm.stub_port,
    show_default="8089 or ADP_LLM_STUB_PORT; 0 picks a free port",
)
@click.option(
    "--latency",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds added to every chat reply.",
)
@click.option(
    "--script",
    "script",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON script of scripted replies and faults (see module docs).",
)
@click.option(
    "--model", default=DEFAULT_MODEL, show_default=True, help="Model id /v1/models lists."
)
@click.option(
    "--chat-template",
    "template",
    type=click.Choice(TEMPLATES),
    default="plain",
    show_default=True,
    help="The toy chat template behind the token ids it returns; rewrite-history changes "
    "earlier turns (as some real templates do), so a prompt no longer extends the last one.",
)
def stub_command(
    host: str, port: int, latency: float, script: str | None, model: str, template: str
) -> None:
    """Serve a deterministic scripted OpenAI-compatible LLM (for tests and benchmarks). It
    answers vLLM's token options (`return_token_ids`, `logprobs`) from a toy tokenizer."""
    try:
        server = StubServer(
            script=Path(script) if script else None,
            latency=latency,
            host=host,
            port=port,
            model=model,
            template=template,
        )
    except (ValueError, re.error) as exc:
        raise click.ClickException(f"bad --script: {exc}") from exc

    async def serve() -> None:
        url = await server.start()
        click.echo(f"llm-stub listening on {url}", err=False)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
