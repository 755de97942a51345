"""A rebuild swaps a new generation of the file in by replacing a link (``projections.swap``):
readers and a running projector move to it, nothing is lost, old generations go away."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from projections import ProjectionReader, Projector, rebuild
from projections.schema import projection_path
from projections.swap import generations, swap_in
from registry.infra.settings import Settings
from tests.projections.tables import assert_matches_fold
from tests.projections.test_projector import running, wait_applied
from tests.projections.workload import produce, random_history


def _live_files(db: Path) -> set[str]:
    return {p.name for p in db.parent.iterdir() if p.name.startswith(db.name)}


async def test_rebuilds_swap_generations_under_readers_and_a_running_projector(
    settings: Settings,
) -> None:
    h = random_history(900, seed=21, n_models=20)
    await produce(settings, h.events[:300])
    db = projection_path(settings)
    projector = Projector(settings, db)
    async with running(projector), ProjectionReader(db) as reader:
        await wait_applied(reader, 299)
        assert not db.is_symlink()  # the first projection: a plain file
        old = sqlite3.connect(db)  # a plain connection opened before the swaps
        assert old.execute("SELECT count(*) FROM events").fetchone() == (300,)
        seen = []
        for lo, hi in ((300, 600), (600, 900)):
            await rebuild(settings, db)
            assert db.is_symlink()
            current = Path(os.path.realpath(db))
            assert current in generations(db)
            assert len(generations(db)) <= 2  # the current one and the one it replaced
            await produce(settings, h.events[lo:hi])
            await wait_applied(reader, hi - 1)  # the running projector moved to the new file
            seen.append(await reader.get_model(h.events[hi - 1].model_id))
        # the connection opened before still reads a whole (old) projection
        assert old.execute("SELECT count(*) FROM events").fetchone() == (300,)
        old.close()
    assert all(seen)
    assert projector.stats.errors == 0
    assert_matches_fold(db, h.events)
    # no journal of the first (plain) file is left under the live name
    assert f"{db.name}-wal" not in _live_files(db)
    assert f"{db.name}-shm" not in _live_files(db)


def test_a_swap_into_no_file_is_a_rename(tmp_path: Path) -> None:
    built, live = tmp_path / "b.db", tmp_path / "live.db"
    sqlite3.connect(built).close()
    swap_in(built, live)
    assert live.is_file()
    assert not live.is_symlink()
    assert not built.exists()
