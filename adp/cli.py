"""`adp`: the platform's command line. Each command lives beside the code it drives and is
imported only when used, so `adp --help` and quick commands stay fast."""

from __future__ import annotations

import importlib

import click

from adp import __version__
from adp.core import logs

# command name -> "module:click_object". The folders read as the data flow.
COMMANDS = {
    "kafka": "adp.streams.broker.cli:kafka",
    "topics": "adp.streams.topics_cli:topics_command",
    "produce": "adp.streams.produce_cli:produce_command",
    "runtime": "adp.streams.runtime_cli:runtime_command",
    "aggregate": "adp.streams.aggregate_cli:aggregate_command",
    "tail": "adp.streams.tail:tail_command",
    "replay": "adp.streams.replay_cli:replay_command",
    "verify": "adp.streams.verify_cli:verify_command",
    "export": "adp.streams.export_cli:export_command",
    "status": "adp.streams.status:status_command",
    "dlq": "adp.streams.dlq_cli:dlq_command",
    "console": "adp.console.cli:console_command",
    "llm": "adp.runtimes.llm.server:llm_command",
    "llm-stub": "adp.runtimes.llm.stub:stub_command",
    "sandbox": "adp.runtimes.tools.sandbox.cli:sandbox_command",
    "demo": "adp.demo:demo_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            # A command whose module is missing is reported, not fatal for the others.
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(name=name, help=f"(unavailable: {reason})",
                           context_settings={"ignore_unknown_options": True,
                                             "allow_extra_args": True})
            def unavailable() -> None:
                raise click.ClickException(f"command {name!r} is unavailable: {reason}")

            return unavailable


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="adp",
                      message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug for adp, -vv: also libraries).")
def main(verbose: int) -> None:
    """Agent Data Platform: tasks.jsonl -> Kafka -> agent runtimes -> step events ->
    trajectories.

    Typical run: `adp kafka up`, `adp runtime code`, `adp aggregate`, `adp produce tasks.jsonl`.
    Settings come from flags, ADP_* environment variables (ADP_BOOTSTRAP, ADP_HOME,
    ADP_OUTPUT_DIR, ADP_SECURITY_PROTOCOL, ADP_LLM_BASE_URL, ...) and an optional TOML file
    (--config or ADP_CONFIG); README lists them all. Exit code 3 from any command: Kafka
    unreachable, or it refused the credentials or an operation (the message says which)."""
    # Our own loggers say what happened at INFO; libraries (aiokafka, faust) only warn, and
    # once a minute when they repeat themselves (core/logs.py).
    logs.setup(verbose)

if __name__ == "__main__":
    main()
