"""The rebuild's writer process, on real SQLite files (no broker needed)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from projections.bulk import BulkWriter
from projections.errors import ProjectionError
from projections.rows import fold_batch
from registry.core.state import RegistryState
from tests.projections.tables import assert_same_tables
from tests.projections.test_fold import TOPIC, build, records_of
from tests.projections.workload import random_history


async def bulk_build(path: Path, records: list, cut: int) -> None:  # type: ignore[type-arg]
    writer = BulkWriter(path)
    await writer.open()
    try:
        state, positions = RegistryState(), {}
        for part in (records[:cut], records[cut:]):
            rows = fold_batch(state, part)
            await writer.write(TOPIC, rows, positions)
            positions.update(rows.positions)
        await writer.create_indexes()
    finally:
        await writer.close()


async def test_the_writer_process_writes_what_the_writer_writes(tmp_path: Path) -> None:
    records = records_of(random_history(600, seed=9, n_models=30).events)
    await build(tmp_path / "live.db", records, [100, 350])
    await bulk_build(tmp_path / "bulk.db", records, 250)
    assert_same_tables(tmp_path / "live.db", tmp_path / "bulk.db")


async def test_a_dead_writer_process_fails_the_load(tmp_path: Path) -> None:
    records = records_of(random_history(50, seed=2).events)
    writer = BulkWriter(tmp_path / "p.db")
    await writer.open()
    try:
        assert writer._proc is not None
        os.kill(writer._proc.pid, signal.SIGKILL)
        rows = fold_batch(RegistryState(), records)

        async def load() -> None:
            await writer.write(TOPIC, rows, {})
            await writer.flush()

        with pytest.raises(ProjectionError, match="rebuild writer"):
            await load()
    finally:
        await writer.close()


async def test_a_bulk_load_starts_from_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "p.db").write_bytes(b"")
    with pytest.raises(ProjectionError, match="exists"):
        await BulkWriter(tmp_path / "p.db").open()
