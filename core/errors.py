"""The platform's errors, and the exit code each kind means.

Library code (every floor below adp.app) raises these with a message of one line that says what
failed and where; it never prints for a command or exits. The application floor
(app/cli.py) prints the message and exits with the kind's code, so a script can tell the kinds
apart:

    0  ok
    1  bad input: a task file, a flag, a setting, a config file, a destination
    2  usage: a flag or argument click itself rejects (also `adp produce` when no line is valid)
    3  Kafka unreachable, or it refused the credentials or an operation
    4  a component crashed while it ran (an aggregator agent, a worker process)
    5  a dependency is missing or unavailable at start-up: bubblewrap, Chromium, the sandbox
       environment, the LLM server package, a sink that cannot be written
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_KAFKA = 3
EXIT_CRASHED = 4
EXIT_DEPENDENCY = 5
EXIT_INTERRUPTED = 130


class AdpError(Exception):
    """An error the user can act on; str() is the one line a command prints."""

    exit_code = EXIT_BAD_INPUT


class BadInput(AdpError, ValueError):
    """A file, flag, setting or destination the user gave is wrong; the message names it."""

    exit_code = EXIT_BAD_INPUT


class KafkaUnavailable(AdpError):
    """Kafka could not be used: unreachable, TLS or authentication failed, or an operation was
    not authorized. The message names the cluster (never a password)."""

    exit_code = EXIT_KAFKA


class ComponentCrashed(AdpError):
    """A part of a running component failed in a way it cannot recover from by itself."""

    exit_code = EXIT_CRASHED


class DependencyUnavailable(AdpError):
    """Something the command needs outside the platform is missing or does not work: a program
    (bubblewrap, Chromium), a package, an environment, a destination. The message says how to
    get it."""

    exit_code = EXIT_DEPENDENCY


class DependencyOutage(DependencyUnavailable):
    """A dependency that a running component uses stopped answering: every configured LLM
    provider unreachable, refusing or overloaded past its retries, the sandbox backend or the
    browser failing to start. Not the agent's failure: a runtime pauses instead of finishing
    the task (streams/runtime/breaker.py). `dependency` names the kind ("llm", "sandbox",
    "browser"); `probe`, where given, returns once the dependency answers again and raises
    while it does not, so the runtime can tell when to resume without spending a task on it."""

    def __init__(
        self,
        message: str,
        dependency: str,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.probe = probe
