"""The generated reference pages of docs/: every `adp` command with its flags (docs/cli.md) and
every setting with its environment variable (docs/configuration.md), from the code itself, so
they cannot drift from it (tests/test_docs.py compares the files with what this generates).

    python -m adp.app.reference          # rewrite both pages
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from adp.app.cli import COMMANDS, main
from adp.core.settings import sections_table, settings_table

DOCS = Path(__file__).resolve().parent.parent / "docs"

CLI_HEAD = """# Command reference

Generated from the code by `python -m adp.app.reference`; `adp <command> --help` says the same.
Every command that talks to Kafka takes `-b/--bootstrap-server` (alias `--bootstrap`) and
`--config`. Exit codes of every command: 0 ok, 1 bad input, 2 usage, 3 Kafka unreachable or it
refused us, 4 a component crashed, 5 a dependency missing or unavailable at start-up, 130
interrupted.
"""

CONFIG_HEAD = """# Configuration

Generated from the code by `python -m adp.app.reference` (core/settings.py, core/sections.py).

Precedence, highest first: a command's flags > environment variables > the TOML config file
(`--config FILE` or `ADP_CONFIG`) > the defaults below. In the config file a shared setting is a
top-level key and a component's setting is a key of its table:

```toml
bootstrap = "kafka-1:9092,kafka-2:9092"
security_protocol = "SASL_SSL"

[llm]
base_url = "http://vllm:8000/v1"
model = "Qwen/Qwen2.5-7B-Instruct"
max_tokens = 4096
```

Relative paths in the file are relative to the file. API keys and passwords are never printed
or logged; prefer the environment (or a file only you can read) for them.

S3 credentials are not settings of the platform: botocore reads them the usual AWS ways
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, an instance
role); `AWS_ENDPOINT_URL_S3` works as botocore defines it, `ADP_S3_ENDPOINT_URL` below is the
platform's own.
"""


def _option_row(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return (
            f"| `{param.human_readable_name}` | argument | {'required' if param.required else ''} |"
        )
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    help_text = " ".join((getattr(param, "help", "") or "").split()).replace("|", "\\|")
    default = param.default
    shown = (
        "" if default is None or callable(default) or param.is_flag else f" (default `{default}`)"
    )
    if isinstance(param.type, click.Choice):
        help_text += f" One of: {', '.join(map(str, param.type.choices))}."
    return f"| {names} | {help_text}{shown} |"


def _command_section(path: list[str], command: click.Command) -> list[str]:
    title = " ".join(["adp", *path])
    lines = [f"## `{title}`", "", inspect.cleandoc(command.help or command.short_help or ""), ""]
    params = [p for p in command.params if p.name not in ("help",)]
    if params:
        lines += ["| flag | meaning |", "|---|---|"]
        lines += [_option_row(p) for p in params]
        lines.append("")
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            lines += _command_section([*path, name], command.commands[name])
    return lines


def cli_page() -> str:
    lines = [CLI_HEAD]
    ctx = click.Context(main)
    for name in COMMANDS.names():
        lines += _command_section([name], main.get_command(ctx, name))
    return "\n".join(lines).rstrip() + "\n"


def configuration_page() -> str:
    return (
        f"{CONFIG_HEAD}\n## Shared settings\n\n{settings_table()}\n\n"
        f"## Component settings\n\n{sections_table()}\n"
    )


PAGES = {"cli.md": cli_page, "configuration.md": configuration_page}


if __name__ == "__main__":
    for name, page in PAGES.items():
        (DOCS / name).write_text(page())
        print(f"wrote {DOCS / name}", file=sys.stderr)
