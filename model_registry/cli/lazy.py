"""Groups whose commands are imported when first used, so that the CLI starts fast.

A command of ``model-registry`` costs what its module imports: the rules, the pydantic
messages, aiokafka, the API. ``LazyGroup`` knows each of its commands by name, by the modules
that define it, and by its help's first paragraph; it imports those modules only when the
command is looked up to run (or for its own ``--help``). Listing the commands (the group's
``--help``) imports nothing: click is handed a stand-in with the same help, so the listing
reads exactly as it would with every command loaded (``tests/model_registry/
test_cli_startup.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, NamedTuple

import click

__all__ = ["Lazy", "LazyCommands", "LazyGroup"]


class Lazy(NamedTuple):
    """A command not imported yet: the modules whose ``register`` adds it (in this order),
    and its help's first paragraph (what the group's ``--help`` lists)."""

    modules: tuple[str, ...]
    help: str


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands: those loaded, and the names of those still to load.

    ``name in commands`` and iteration need no import; ``commands[name]`` (and ``get``)
    imports every module that adds to ``name`` first (``audit``: ``reads`` defines the group,
    ``audit_verify`` adds ``verify``), even when one of them already added it.
    """

    def __init__(self, lazy: Mapping[str, Lazy], load: Callable[[str], None]) -> None:
        self._loaded: dict[str, click.Command] = {}
        self._lazy = dict(lazy)
        self._load = load

    def __getitem__(self, name: str) -> click.Command:
        lazy = self._lazy.get(name)
        if lazy is not None:  # loaded or not, every module that adds to it is imported first
            for module in lazy.modules:
                self._load(module)
            self._lazy.pop(name, None)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._loaded.keys() | self._lazy.keys()))

    def __len__(self) -> int:
        return len(self._loaded.keys() | self._lazy.keys())

    def pending(self, name: str) -> Lazy | None:
        """What is known of ``name`` while it is not loaded; None once it is (or if unknown)."""
        return None if name in self._loaded else self._lazy.get(name)


class LazyGroup(click.Group):
    """A click group whose commands (``lazy``: name -> ``Lazy``) are imported on first use;
    ``load(module)`` imports one module and registers its commands."""

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, Lazy] | None = None,
        load: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if lazy:
            if load is None:
                raise TypeError("a LazyGroup with lazy commands needs load")
            self.commands = LazyCommands(lazy, load)
        self._listing = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        commands = self.commands
        if self._listing and isinstance(commands, LazyCommands):
            pending = commands.pending(cmd_name)
            if pending is not None:  # listed, not run: a stand-in with the same help
                return click.Command(cmd_name, help=pending.help)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False
