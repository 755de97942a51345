"""What the CLI's commands share: the settings (read once), running a coroutine, exit codes.

Exit codes: 0 success, 1 an error a result reports (e.g. a prediction's), 2 a rejection or
bad input, 3 a timeout or an unreachable broker.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from model_registry.runtime import read_runtime
from registry.core.errors import RegistryError
from registry.infra.settings import Settings, SettingsError

__all__ = [
    "cli_settings",
    "current_settings",
    "run",
    "run_reporting",
    "run_until_signalled",
]

T = TypeVar("T")


def current_settings(**overrides: Any) -> Settings:
    """The settings of this invocation: read from the environment once, by the first caller."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):
        try:
            root.obj = Settings.from_env()
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
    settings: Settings = root.obj
    return settings.with_(**overrides) if overrides else settings


def cli_settings(**overrides: Any) -> Settings:
    """The settings; without ``KAFKA_BOOTSTRAP_SERVERS``, the address of a running
    ``model-registry up`` found in the data dir."""
    settings = current_settings(**overrides)
    if settings.bootstrap_servers:
        return settings
    info = read_runtime(settings.data_dir)
    if info is None:
        raise click.ClickException(
            "no Kafka to talk to: set KAFKA_BOOTSTRAP_SERVERS, or start the stack with "
            "`model-registry up`"
        )
    return settings.with_(
        bootstrap_servers=info["bootstrap_servers"],
        topic_prefix=info.get("topic_prefix", settings.topic_prefix),
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a click command."""
    return asyncio.run(coro)


def run_reporting(coro: Coroutine[Any, Any, T]) -> T:
    """``run``, turning the registry's typed errors into a clean CLI failure."""
    try:
        return run(coro)
    except RegistryError as exc:
        raise click.ClickException(f"[{exc.code}] {exc}") from None


async def run_until_signalled(runner: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``runner(stop)`` until SIGINT/SIGTERM sets ``stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner(stop)
