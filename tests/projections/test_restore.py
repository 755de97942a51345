"""Restoring the log into a fresh embedded broker, and refusing to mix two histories.

These tests start their own embedded brokers: the point is a broker that lost its data
(memory-only storage) and comes back with the same, or another, cluster id.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from projections import ProjectionHistoryMismatch, Projector, RestoreRefused, rebuild, restore_log
from projections.guard import placeholder_digest
from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import Settings
from tests.helpers import read_topic
from tests.projections.tables import assert_matches_fold, dump
from tests.projections.workload import produce, produce_raw, random_history

PREFIX = "restore."


@pytest.fixture
def brokers() -> Iterator[list[EmbeddedBroker]]:
    started: list[EmbeddedBroker] = []
    yield started
    for broker in started:
        broker.stop()


async def fresh(brokers: list[EmbeddedBroker], cluster_id: str, data_dir: Path) -> Settings:
    broker = EmbeddedBroker(cluster_id=cluster_id)
    brokers.append(broker)
    await asyncio.to_thread(broker.start)
    settings = Settings(
        bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=PREFIX,
        data_dir=data_dir,
        fetch_max_wait_ms=20,
    )
    await ensure_topics(settings)
    return settings


async def test_restore_round_trip_keeps_offsets_and_the_projection(
    brokers: list[EmbeddedBroker], tmp_path: Path
) -> None:
    h = random_history(600, seed=21, n_models=15)
    first = await fresh(brokers, "registry-a", tmp_path)
    await produce(first, h.events[:300])
    await produce_raw(first, [(b"x", b"stray bytes", [("origin", b"\x00\x01")])])
    await produce(first, h.events[300:])
    db = tmp_path / "projection.db"
    await Projector(first, db).catch_up()
    original = await read_topic(first, "registry.events")
    before = dump(db)
    brokers.pop().stop()  # the memory-only broker loses everything

    second = await fresh(brokers, "registry-a", tmp_path)
    assert await restore_log(second, db) == len(original)
    restored = await read_topic(second, "registry.events")
    assert [(r.offset, r.key, r.timestamp) for r in restored] == [
        (r.offset, r.key, r.timestamp) for r in original
    ]
    for a, b in zip(original, restored, strict=True):
        if a.offset == 300:  # the unreadable record comes back as a placeholder naming its digest
            assert placeholder_digest(b.value) == hashlib.sha256(a.value).hexdigest()
            assert list(b.headers) == list(a.headers)
        else:
            assert (b.value, list(b.headers)) == (a.value, list(a.headers))
    projector = Projector(second, db)
    assert await projector.catch_up() == 0  # carries on from its checkpoint: no rebuild
    assert dump(db) == before
    more = random_history(50, seed=22, n_models=15, history=h).events[-50:]
    await produce(second, more)
    assert await Projector(second, db).catch_up() == 50

    with pytest.raises(RestoreRefused, match="not empty"):
        await restore_log(second, db)


async def test_another_cluster_or_a_lost_log_is_refused_until_rebuilt(
    brokers: list[EmbeddedBroker], tmp_path: Path
) -> None:
    h = random_history(200, seed=5, n_models=6)
    first = await fresh(brokers, "registry-b", tmp_path)
    await produce(first, h.events)
    db = tmp_path / "projection.db"
    await Projector(first, db).catch_up()
    brokers.pop().stop()

    # Same cluster id, data lost and not restored: the stored position is beyond the log.
    empty = await fresh(brokers, "registry-b", tmp_path)
    with pytest.raises(ProjectionHistoryMismatch, match="ends at 0") as info:
        await Projector(empty, db).catch_up()
    assert info.value.code == "ProjectionHistoryMismatch"
    # ... and a log with other events at the same offsets is another history too.
    await produce(empty, random_history(250, seed=99, n_models=6).events)
    with pytest.raises(ProjectionHistoryMismatch, match="different record"):
        await Projector(empty, db).catch_up()
    brokers.pop().stop()

    # Another cluster: the restore itself works, the projector refuses until rebuilt.
    other = await fresh(brokers, "registry-c", tmp_path)
    assert await restore_log(other, db) == len(h.events)
    with pytest.raises(ProjectionHistoryMismatch, match="cluster registry-b"):
        await Projector(other, db).catch_up()
    await rebuild(other, db)
    assert await Projector(other, db).catch_up() == 0
    assert_matches_fold(db, h.events)


async def test_restore_refuses_a_log_with_offset_gaps(
    brokers: list[EmbeddedBroker], tmp_path: Path
) -> None:
    import sqlite3

    h = random_history(20, seed=1, n_models=3)
    first = await fresh(brokers, "registry-d", tmp_path)
    await produce(first, h.events)
    db = tmp_path / "projection.db"
    await Projector(first, db).catch_up()
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM events WHERE offset = 5")  # as if the log had a gap there
    conn.commit()
    conn.close()
    brokers.pop().stop()
    second = await fresh(brokers, "registry-d", tmp_path)
    with pytest.raises(RestoreRefused, match="jumps from offset 4 to 6"):
        await restore_log(second, db)
    assert await read_topic(second, "registry.events") == []
