"""Options that several commands share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from adp.core.settings import SettingsError, settings
from adp.streams.kafka.clients import kafka_errors

F = TypeVar("F", bound=Callable[..., Any])


def kafka_options(func: F) -> F:
    """-b/--bootstrap-server (alias --bootstrap) and --config for a command that talks to Kafka.
    The command receives `conf`: the Settings with the flags applied (TLS/SASL and the rest
    from ADP_* and the config file)."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, bootstrap: str | None = None, config: Path | None = None, **kwargs: Any
    ) -> Any:
        try:
            conf = settings(bootstrap=bootstrap, config=config)
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
        with kafka_errors(conf):
            return func(*args, conf=conf, **kwargs)

    wrapper = click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML file of settings (bootstrap, security_protocol, sasl_*, ssl_*, ...) "
        "[ADP_CONFIG]; flags and ADP_* variables override it.",
    )(wrapper)
    wrapper = click.option(
        "-b",
        "--bootstrap-server",
        "--bootstrap",
        "bootstrap",
        metavar="HOST:PORT[,...]",
        default=None,
        help="Kafka bootstrap servers [ADP_BOOTSTRAP, default 127.0.0.1:9092].",
    )(wrapper)
    return wrapper  # type: ignore[return-value]
