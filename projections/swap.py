"""Swapping a rebuilt projection file in, atomically for its readers.

The new file is built privately, then copied into the live file with SQLite's backup API in
one write transaction. Readers (WAL mode) see the old projection until that transaction
commits and the new one after: never a half-built file. Replacing the file by rename would
be unsafe in WAL mode: a reader still holding the old file keeps the old ``-wal`` alive under
the shared name, and SQLite would replay it into the new database.

A projector running on the live file notices that the positions changed under it and
reloads (``ProjectionReplaced``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

__all__ = ["remove_files", "swap_in"]


def remove_files(path: Path) -> None:
    """Remove a SQLite file and its journals, if present."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def swap_in(built: Path, live: Path, busy_timeout: float = 60.0) -> None:
    """Make ``live`` hold exactly what ``built`` holds, atomically for its readers."""
    if not live.exists():
        os.replace(built, live)
        return
    src = sqlite3.connect(built)
    dst = sqlite3.connect(live, timeout=busy_timeout)
    try:
        dst.execute("PRAGMA journal_mode=WAL")
        src.backup(dst)  # all pages in one step: one transaction on the live file
    finally:
        src.close()
        dst.close()
