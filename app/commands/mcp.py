"""`adp mcp list|serve`: the Model Context Protocol servers the runtimes use, and the platform's
own tools served to any MCP client (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from adp.core.errors import DependencyUnavailable
from adp.core.settings import SettingsError, settings


def _settings(config: Path | None):
    try:
        return settings(config=config)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


CONFIG = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML file with the [mcp.servers.NAME] tables [ADP_CONFIG].",
)


@click.group("mcp")
def mcp_command() -> None:
    """Model Context Protocol: the servers whose tools the runtimes offer their agents
    ([mcp.servers.NAME] in the config file), and the platform's sandbox and browser served to
    any MCP client."""


@mcp_command.command("list")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def list_command(config: Path | None, as_json: bool) -> None:
    """Connect to each configured server and print its tools with their input schemas (the
    name a task's expected_tools may use, and the function name the model sees), or one line
    for a server that cannot start or answer. Exits 5 when any server failed."""
    from adp.runtimes.tools.mcp.survey import survey

    conf = _settings(config)
    servers = conf.mcp.servers
    reports = asyncio.run(survey(servers, conf.log_dir / "mcp"))
    if as_json:
        click.echo(json.dumps({"servers": [r.as_json() for r in reports]}, indent=2))
    elif not reports:
        click.echo("no MCP servers configured (add [mcp.servers.NAME] tables to the config file)")
    for report in [] if as_json else reports:
        if report.error is not None:
            click.echo(f"{report.name}: {report.error}")
            continue
        click.echo(f"{report.name} ({report.transport}: {report.where}): {len(report.tools)} tools")
        for tool in report.tools:
            off = "" if tool["offered"] else "  (not offered: not in its `tools` list)"
            click.echo(f"  {tool['name']}  [{tool['function']}]{off}")
            click.echo(f"    {tool['description']}")
            click.echo(f"    {json.dumps(tool['input_schema'], ensure_ascii=False)}")
    failed = [r.name for r in reports if r.error is not None]
    if failed:
        raise DependencyUnavailable(f"MCP server(s) not available: {', '.join(failed)}")


@mcp_command.command("serve")
@click.argument("tools", type=click.Choice(["python", "browser"]))
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: one client on stdin/stdout (what desktop assistants start); http: "
    "streamable HTTP at http://HOST:PORT/PATH for any number of clients.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to bind.")
@click.option("--port", type=int, default=8765, show_default=True, help="HTTP: port.")
@click.option("--path", default="/mcp", show_default=True, help="HTTP: the endpoint's path.")
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bwrap", "docker"]),
    default="auto",
    show_default=True,
    help="python: the sandbox backend.",
)
def serve_command(
    tools: str, transport: str, host: str, port: int, path: str, sandbox: str
) -> None:
    """Serve TOOLS (python: the bubblewrap sandbox with the scientific environment, files kept
    between calls; browser: the Playwright-driven Chromium) to any MCP client. The runtimes'
    own tools, the same code. Stops on Ctrl-C or when the stdio client goes away."""
    from adp.runtimes.tools.mcp.serve import SERVED, serve_http, serve_stdio

    async def main() -> None:
        opened = SERVED[tools](sandbox) if tools == "python" else SERVED[tools]()
        try:
            async with opened as server:
                if transport == "stdio":
                    await serve_stdio(server)
                else:
                    where = f"http://{host}:{port}{path}"
                    click.echo(f"serving {tools} over MCP at {where}", err=True)
                    await serve_http(server, host, port, path)
        except OSError as exc:  # a port in use, a Chromium that cannot start
            raise DependencyUnavailable(f"adp mcp serve {tools}: {exc}") from None

    if transport == "stdio" and sys.stdin.isatty():
        click.echo("speaking MCP on stdin/stdout (start it from an MCP client)", err=True)
    asyncio.run(main())
