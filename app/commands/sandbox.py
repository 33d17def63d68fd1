"""`adp sandbox build|status`: the sandbox's Python environment (env.py)."""

from __future__ import annotations

from pathlib import Path

import click

from adp.core.settings import settings
from adp.runtimes.tools.sandbox.env import (
    SandboxEnvError,
    build_env,
    env_dir,
    find_env,
    requirements_path,
)


@click.group("sandbox")
def sandbox_command() -> None:
    """The code sandbox's Python environment: numpy, pandas, matplotlib, scipy, scikit-learn,
    sympy (or what ADP_SANDBOX_REQUIREMENTS lists), in a venv of Debian's python3 of its own,
    mounted read-only into every run. Built once per requirements file and cached."""


@sandbox_command.command("build")
@click.option(
    "-r",
    "--requirements",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="requirements file (default: $ADP_SANDBOX_REQUIREMENTS or the shipped one)",
)
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    help="build at this folder (default: the cache, keyed by the requirements' hash); "
    "point ADP_SANDBOX_ENV at it to use it",
)
@click.option("--force", is_flag=True, help="rebuild even if it is already built")
def build_command(requirements: Path | None, into: Path | None, force: bool) -> None:
    """Build the environment (nothing to do when it is already built)."""
    try:
        env = build_env(requirements, into, force=force, progress=click.echo)
    except SandboxEnvError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sandbox environment: {env.root}")
    click.echo(f"libraries named in the code prompt: {', '.join(env.libraries())}")


@sandbox_command.command("status")
def status_command() -> None:
    """Which environment the sandbox uses now, and whether it is built."""
    if settings().sandbox.bare:
        click.echo("ADP_SANDBOX_ENV=none: programs run with the bare /usr/bin/python3")
        return
    try:
        env = find_env()
        click.echo(f"requirements: {requirements_path()}")
        if env is None:
            click.echo(
                f"not built: {env_dir()} (run `adp sandbox build`; ADP_SANDBOX_ENV=none "
                "runs the bare python3)"
            )
            raise SystemExit(1)
        click.echo(f"built: {env.root}\nlibraries: {', '.join(env.libraries())}")
    except SandboxEnvError as exc:
        raise click.ClickException(str(exc)) from exc
