"""`adp`: the platform's command line.

Every command is a module of app/commands/, imported only when it runs, so `adp --help` and
quick commands stay fast. This is also the one place errors become exit codes: library code
raises the kinds of adp.core.errors, and `main` prints the message as one line (a traceback
only with -v) and exits with the kind's code (the table is in adp.core.errors)."""

from __future__ import annotations

import logging
import sys

import click

from adp import __version__
from adp.core import logs
from adp.core.errors import EXIT_INTERRUPTED, AdpError
from adp.core.registry import Registry

# command name -> "module:click object"; `adp <name>` imports only its module
COMMANDS = Registry(
    "command",
    {
        name: f"adp.app.commands.{module}:{attr}"
        for name, module, attr in [
            ("kafka", "kafka", "kafka"),
            ("topics", "topics", "topics_command"),
            ("produce", "produce", "produce_command"),
            ("runtime", "runtime", "runtime_command"),
            ("aggregate", "aggregate", "aggregate_command"),
            ("tail", "tail", "tail_command"),
            ("replay", "replay", "replay_command"),
            ("verify", "verify", "verify_command"),
            ("export", "export", "export_command"),
            ("synthesize", "synthesize", "synthesize_command"),
            ("groups", "groups", "groups_command"),
            ("status", "status", "status_command"),
            ("health", "health", "health_command"),
            ("dlq", "dlq", "dlq_command"),
            ("console", "console", "console_command"),
            ("llm", "llm", "llm_command"),
            ("llm-stub", "llm_stub", "stub_command"),
            ("sandbox", "sandbox", "sandbox_command"),
            ("mcp", "mcp", "mcp_command"),
            ("demo", "demo", "demo_command"),
        ]
    },
)

log = logging.getLogger("adp")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return COMMANDS.names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            return COMMANDS.load(name)
        except AdpError as exc:
            # a command whose module cannot be imported is reported, not fatal for the others
            reason = str(exc)

            @click.command(
                name=name,
                help=f"(unavailable: {reason})",
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            def unavailable() -> None:
                raise AdpError(reason)

            return unavailable

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AdpError as exc:
            if log.isEnabledFor(logging.DEBUG):  # -v: the whole story
                log.exception("%s", exc)
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "-V", "--version", prog_name="adp", message="%(prog)s %(version)s"
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output (-v: debug for adp and tracebacks, -vv: also libraries).",
)
def main(verbose: int) -> None:
    """Agent Data Platform: tasks.jsonl -> Kafka -> agent runtimes -> step events ->
    trajectories.

    Typical run: `adp kafka up`, `adp runtime code`, `adp aggregate`, `adp produce tasks.jsonl`.
    Settings come from flags, ADP_* environment variables (ADP_BOOTSTRAP, ADP_HOME,
    ADP_OUTPUT_DIR, ADP_SECURITY_PROTOCOL, ADP_LLM_BASE_URL, ...) and an optional TOML file
    (--config or ADP_CONFIG); docs/configuration.md lists them all.

    Exit codes of every command: 0 ok, 1 bad input (a file, flag, setting or destination),
    2 usage, 3 Kafka unreachable or it refused the credentials or an operation, 4 a component
    crashed, 5 a dependency missing or unavailable at start-up (bubblewrap, Chromium, the
    sandbox environment, the LLM server), 130 interrupted."""
    # Our own loggers say what happened at INFO; libraries (aiokafka, faust) only warn, and
    # once a minute when they repeat themselves (core/logs.py).
    logs.setup(verbose)


if __name__ == "__main__":
    main()
