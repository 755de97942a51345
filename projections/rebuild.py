"""Rebuild: replay ``registry.events`` from offset 0 into a new file, then swap it in.

The new file is built privately (no journal, indexes created after the load), then copied
into the live file with SQLite's backup API in one write transaction. Readers (WAL mode)
see the old projection until that transaction commits and the new one after: never a
half-built file. Replacing the file by rename would be unsafe in WAL mode: a reader still
holding the old file keeps the old ``-wal`` alive under the shared name, and SQLite would
replay it into the new database.

A projector running on the live file notices that the positions changed under it and
reloads (``ProjectionReplaced``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from projections.projector import Progress, Projector
from registry.settings import Settings

__all__ = ["RebuildResult", "rebuild", "swap_in"]


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did."""

    records: int
    events_applied: int
    errors: int
    seconds: float
    path: Path
    careful: int = 0  # records decoded by the careful path (the rest took the fast one)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


async def rebuild(
    settings: Settings, db_path: Path, *, progress: Progress | None = None, max_records: int = 10000
) -> RebuildResult:
    """Rebuild the projection at ``db_path`` from offset 0 and swap it in atomically."""
    started = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".rebuild")
    _remove(tmp)
    try:
        projector = Projector(
            settings, tmp, bulk=True, dlq=False, progress=progress, max_records=max_records
        )
        async with projector:
            records = await projector.catch_up()
            await projector.writer.create_indexes()
        await asyncio.to_thread(swap_in, tmp, db_path)
    finally:
        _remove(tmp)
    s = projector.stats
    return RebuildResult(
        records, s.events_applied, s.errors, time.perf_counter() - started, db_path, s.careful
    )


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
