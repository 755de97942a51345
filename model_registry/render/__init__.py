"""Human output (rich): tables of the projection's reads and the A/B comparison report.

Used by the CLI and the demo; a separate package so that the demo does not depend on the CLI.
In a terminal, tables fit its width (ids fold, never cut); piped or redirected (``| cat``,
``> file``) they keep every value whole, whatever the width.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["UNBOUNDED_WIDTH", "console"]

UNBOUNDED_WIDTH = 100_000
"""The width of output that is not a terminal: as wide as its values need."""


def console() -> Console:
    """A console for the CLI's output: the terminal's width, or unbounded when not a tty."""
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = UNBOUNDED_WIDTH
    return out
