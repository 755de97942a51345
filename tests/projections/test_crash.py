"""SIGKILL the projector process at random points of a 20,000-event replay.

Each restart resumes from the position committed with the last batch; the final tables
must equal the fold of the log done in memory: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from projections import rebuild
from projections.schema import projection_path
from registry.infra.settings import Settings
from tests.helpers import eventually
from tests.projections.tables import assert_matches_fold, assert_same_tables
from tests.projections.workload import produce, random_history

N_EVENTS = 20_000


def committed(db: Path) -> int:
    """The committed position, 0 while the file or its tables do not exist yet."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT max(next_offset) FROM checkpoints").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def spawn(settings: Settings, db: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
    }
    cmd = [
        sys.executable,
        "-m",
        "model_registry",
        "projector",
        "--db",
        str(db),
        "--max-records",
        "250",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


async def wait_until(
    db: Path, proc: subprocess.Popen[bytes], at_least: int, timeout: float = 60
) -> int:
    def reached() -> int:
        assert proc.poll() is None, (
            f"projector exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
        position = committed(db)
        return position if position >= at_least else 0

    return await eventually(
        reached, timeout, interval=0.005, what=f"the projector reaches offset {at_least}"
    )


async def test_sigkill_at_random_points_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(4242)
    history = random_history(N_EVENTS, seed=4242, n_models=400)
    await produce(settings, history.events)
    db = projection_path(settings)
    positions = []
    proc = spawn(settings, db)  # first, a kill during start-up (file creation, schema, first batch)
    await asyncio.sleep(rng.uniform(0.3, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for target in sorted(rng.sample(range(1_000, N_EVENTS - 1_000), 4)):
        proc = spawn(settings, db)
        try:
            await wait_until(db, proc, target)
            await asyncio.sleep(rng.uniform(0, 0.03))  # land anywhere inside the next batch
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        positions.append(committed(db))
    assert positions == sorted(positions)
    assert positions[-1] < N_EVENTS
    proc = spawn(settings, db)
    try:
        await wait_until(db, proc, N_EVENTS)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert_matches_fold(db, history.events)
    await rebuild(settings, tmp_path / "fresh.db")
    assert_same_tables(db, tmp_path / "fresh.db")
