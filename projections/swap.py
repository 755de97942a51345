"""Swapping a rebuilt projection file in, atomically for its readers.

The live path (``projection.db``) becomes a symbolic link to the current **generation** of
the file, ``projection.db.<12 hex digits>`` beside it. A rebuild builds a new generation
privately, then replaces the link with one naming it (``rename``: atomic). SQLite resolves
the link when it opens the file and names the journals after the target
(``projection.db.<gen>-wal``), so every generation has its own WAL and shared memory:
a connection opened before the swap keeps reading the old generation, whole, until it
reopens, and one opened after reads the new one; nobody ever sees a half-built file, and no
WAL of one generation is ever replayed into another. Replacing the file itself by rename
would not be safe in WAL mode (a reader still holding the old file keeps its ``-wal`` alive
under the shared name, and SQLite would replay it into the new database) — hence the link.

``ProjectionReader`` and ``ProjectionWriter`` check the file's identity (``stat`` follows the
link) and reopen when it changed; the writer then finds the positions changed under it
(``ProjectionReplaced``) and the projector reloads. The previous generation is kept until
the next swap (a reader may be opening it at the moment of the swap), older ones are
removed. The swap costs a rename, whatever the file's size: copying the new file into the
live one (SQLite's backup API, the method before) wrote it twice, into the WAL and back,
~11 s for 1 GB on the reference machine. With a SQLite older than 3.34 (not known to
resolve links when naming journals) the copy is still used.

The first projection (no live path yet) is a plain file, renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import uuid
from pathlib import Path

__all__ = ["generations", "remove_files", "swap_in"]

_LINKS = sqlite3.sqlite_version_info >= (3, 34, 0)


def remove_files(path: Path) -> None:
    """Remove a SQLite file and its journals, if present."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def generations(live: Path) -> list[Path]:
    """The generation files beside ``live`` (``<name>.<12 hex digits>``), current or not."""
    pattern = re.compile(re.escape(live.name) + r"\.[0-9a-f]{12}")
    with contextlib.suppress(FileNotFoundError):
        return sorted(p for p in live.parent.iterdir() if pattern.fullmatch(p.name))
    return []


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(built: Path, live: Path, busy_timeout: float = 60.0) -> None:
    """Make ``live`` name exactly what ``built`` holds, atomically for its readers.

    ``built`` is consumed (renamed, or copied and left for the caller to remove)."""
    if not live.exists() and not live.is_symlink():
        os.replace(built, live)
        return
    if not _LINKS:
        _copy_in(built, live, busy_timeout)
        return
    plain = not live.is_symlink()  # the first projection, a file of its own
    previous = Path(os.path.realpath(live))
    gen = live.with_name(f"{live.name}.{uuid.uuid4().hex[:12]}")
    remove_files(gen)
    os.replace(built, gen)
    conn = sqlite3.connect(gen)  # WAL like the live file: readers never block its writer
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    link = live.with_name(f".{live.name}.link")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(gen.name, link)
    os.replace(link, live)  # the swap
    _fsync_dir(live.parent)
    for old in generations(live):
        if old != gen and old != previous:
            remove_files(old)
    if plain:
        # The live path was a plain file (the first projection): its journals are named
        # after that path, which no connection opens any more. Those still open on it keep
        # their descriptors.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{live}{suffix}")


def _copy_in(built: Path, live: Path, busy_timeout: float) -> None:
    """The live file's pages replaced by the built file's in one transaction (backup API)."""
    src = sqlite3.connect(built)
    dst = sqlite3.connect(live, timeout=busy_timeout)
    try:
        dst.execute("PRAGMA journal_mode=WAL")
        src.backup(dst)  # all pages in one step: one transaction on the live file
    finally:
        src.close()
        dst.close()
