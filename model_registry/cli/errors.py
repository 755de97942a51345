"""How a CLI command fails: one or two sentences on stderr and an exit code, never a traceback.

Exit codes (the README's table):

- 0 success;
- 1 nothing found (no such model, test or events), a prediction answered with an error, or
  an unexpected error;
- 2 the input was refused: a rejection by the decider, an invalid argument, file or setting;
- 3 the broker, the running stack or the projection could not be reached, or did not
  answer in time.

(``audit verify`` adds 4: the log does not verify.) ``RegistryGroup`` turns every exception a
command lets through into a ``CliError`` by ``explain``; ``--debug`` (or ``REGISTRY_DEBUG=1``)
lets the traceback through instead.
"""

from __future__ import annotations

import errno
import functools
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    import json

__all__ = [
    "FAILED",
    "INVALID",
    "OK",
    "UNREACHABLE",
    "CliError",
    "RegistryGroup",
    "explain",
    "fail",
]

OK, FAILED, INVALID, UNREACHABLE = 0, 1, 2, 3

_DEBUG_HINT = "Run again with --debug (or REGISTRY_DEBUG=1) to see the traceback."
_BROKER_HINT = (
    "Is the registry running? Start it with `model-registry up`, or check KAFKA_BOOTSTRAP_SERVERS."
)


class CliError(click.ClickException):
    """A failure told in words on stderr, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


def fail(message: str, exit_code: int = FAILED) -> NoReturn:
    """Stop the command: ``message`` on stderr, exit with ``exit_code``."""
    raise CliError(message, exit_code)


def explain(exc: BaseException) -> CliError:
    """``exc`` as a sentence for a person and the exit code its kind calls for."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, CliError):
        return exc
    for kinds, describe in _explanations():
        if isinstance(exc, kinds):
            message, code = describe(exc)
            return CliError(message, code)
    name = type(exc).__name__
    text = _one_line(exc)
    return CliError(f"unexpected error ({name}){': ' + text if text else ''}. {_DEBUG_HINT}")


def _one_line(exc: BaseException, limit: int = 600) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rejected(exc: Any) -> tuple[str, int]:
    return f"rejected ({exc.rejection.code}): {exc.rejection.message}", INVALID


def _validation(exc: Any) -> tuple[str, int]:
    from registry.core.errors import describe_validation_error

    return f"invalid input: {describe_validation_error(exc)[0]}.", INVALID


def _os_error(exc: Any) -> tuple[str, int]:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{exc.strerror or 'address already in use'}: that port is taken by another "
            "process; choose another one (0 picks a free port).",
            INVALID,
        )
    if exc.errno in {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ETIMEDOUT}:
        return f"cannot connect: {exc.strerror or exc}. {_BROKER_HINT}", UNREACHABLE
    if exc.filename is not None and exc.errno in _PATH_ERRORS:
        return f"{exc.filename}: {exc.strerror}.", INVALID
    return f"{type(exc).__name__}: {_one_line(exc)}. {_DEBUG_HINT}", FAILED


_PATH_ERRORS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EROFS,
    errno.ENOSPC,
}


@functools.cache
def _explanations() -> list[tuple[Any, Any]]:
    """Kinds of exception and how to tell each (imported on first use: the CLI starts fast)."""
    import json
    import sqlite3

    from aiokafka.errors import KafkaError
    from pydantic import ValidationError
    from yaml import YAMLError

    from projections.errors import ProjectionLagError, ProjectionUnavailable
    from registry.core.errors import (
        BrokerUnavailable,
        CommandTimeout,
        RegistryError,
        Rejected,
        SecretInConfig,
    )
    from registry.infra.files import DataDirLocked
    from registry.infra.identity import IdentityError
    from registry.infra.settings import SettingsError

    return [
        (Rejected, _rejected),
        (SecretInConfig, lambda e: (f"rejected (SecretInConfig): {e}", INVALID)),
        (ValidationError, _validation),
        (SettingsError, lambda e: (f"invalid setting: {e}", INVALID)),
        ((IdentityError, DataDirLocked), lambda e: (str(e), INVALID)),
        (CommandTimeout, lambda e: (f"timed out: {e}", UNREACHABLE)),
        (BrokerUnavailable, lambda e: (f"{e}. {_BROKER_HINT}", UNREACHABLE)),
        ((ProjectionLagError, ProjectionUnavailable), lambda e: (str(e), UNREACHABLE)),
        (
            TimeoutError,
            lambda e: (
                f"timed out waiting for the broker or the projection. {_BROKER_HINT}",
                UNREACHABLE,
            ),
        ),
        (KafkaError, lambda e: (f"Kafka error: {_one_line(e)}. {_BROKER_HINT}", UNREACHABLE)),
        (RegistryError, lambda e: (f"[{e.code}] {_one_line(e)}", FAILED)),
        (json.JSONDecodeError, lambda e: (f"not valid JSON: {e.msg} at {_at(e)}.", INVALID)),
        (YAMLError, lambda e: (f"not valid YAML: {_one_line(e)}", INVALID)),
        (OSError, _os_error),
        (
            sqlite3.DatabaseError,
            lambda e: (
                f"cannot read the database ({_one_line(e)}): is it one the registry wrote? "
                "Give the right --db, or rebuild it (`model-registry projections rebuild`).",
                INVALID,
            ),
        ),
    ]


def _at(exc: json.JSONDecodeError) -> str:
    return f"line {exc.lineno} column {exc.colno}"


def debug_requested(ctx: click.Context) -> bool:
    """``--debug`` on the command line, or ``REGISTRY_DEBUG`` in the settings."""
    root = ctx.find_root()
    if root.params.get("debug"):
        return True
    if root.obj is None:  # no command has read the settings yet
        return False
    from registry.infra.settings import Settings

    return isinstance(root.obj, Settings) and root.obj.debug


class RegistryGroup(click.Group):
    """The root group: whatever a command lets through is told in words (``explain``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            explained = explain(exc)
            if debug_requested(ctx):
                explained.show()
                raise
            raise explained from None
