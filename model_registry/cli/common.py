"""What the CLI's commands share: the settings (read once), running a coroutine.

Exit codes and how a failure is told: ``model_registry.cli.errors``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from model_registry.cli.errors import INVALID, UNREACHABLE, fail

if TYPE_CHECKING:  # imported where used: a command pays only for what it needs
    import asyncio

    from registry.infra.settings import Settings

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
    from registry.infra.settings import Settings, SettingsError

    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):
        try:
            root.obj = Settings.from_env()
        except SettingsError as exc:
            fail(f"invalid setting: {exc}", INVALID)
    settings: Settings = root.obj
    return settings.with_(**overrides) if overrides else settings


def cli_settings(**overrides: Any) -> Settings:
    """The settings; without ``KAFKA_BOOTSTRAP_SERVERS``, the address of a running
    ``model-registry up`` found in the data dir."""
    from model_registry.runtime import find_running

    settings = current_settings(**overrides)
    found = find_running(settings)
    if found is None:
        fail(
            f"no registry is running on the data dir {settings.data_dir}: start it with "
            "`model-registry up` (or point REGISTRY_DATA_DIR at its data dir), or set "
            "KAFKA_BOOTSTRAP_SERVERS.",
            UNREACHABLE,
        )
    return found


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a click command."""
    import asyncio

    return asyncio.run(coro)


def run_reporting(coro: Coroutine[Any, Any, T]) -> T:
    """``run``: what it raises is told in words by the root group (``errors.explain``)."""
    return run(coro)


async def run_until_signalled(runner: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``runner(stop)`` until SIGINT/SIGTERM sets ``stop``."""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner(stop)
