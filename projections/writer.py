"""The projection's one writer: a batch of rows and its positions in one SQLite transaction.

A crash at any point leaves either the whole batch with its checkpoint or neither, so the
projector resumes exactly where the file says and nothing is lost or doubled.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from projections._bulkchild import events_inserts
from projections.errors import ProjectionReplaced, ProjectionUnavailable
from projections.rows import BatchRows
from projections.schema import (
    INDEXES,
    REGISTRY_REVISION_KEY,
    SCHEMA_VERSION,
    TABLES,
    writer_pragmas,
)
from registry.core.chain import Chain, record_hash
from registry.core.state import ActiveABTest, ModelState, RegistryState, loads

__all__ = ["INSERT_EVENTS", "SET_META", "ProjectionWriter", "batch_statements"]

INSERT_EVENTS = "INSERT INTO events VALUES (" + ",".join("?" * 16) + ")"
_INSERT_HISTORY = "INSERT INTO status_history VALUES (" + ",".join("?" * 11) + ")"
_UPSERT_VERSION = (
    "INSERT INTO model_versions (model_id, version, major, minor, patch, released_status, config, "
    "metrics, "
    "released_at, released_by, released_revision, partition, offset) VALUES ("
    + ",".join("?" * 13)
    + ") "
    # A re-registration of a version it already carried: keep when it was first released.
    "ON CONFLICT (model_id, version) DO UPDATE SET released_status = excluded.released_status, "
    "config = excluded.config, metrics = excluded.metrics, superseded_at = NULL"
)
_UPDATE_VERSION_METRICS = "UPDATE model_versions SET metrics = ? WHERE model_id = ? AND version = ?"
_SUPERSEDE = "UPDATE model_versions SET superseded_at = ? WHERE model_id = ? AND version = ?"
_INSERT_AB = (
    "INSERT INTO ab_tests (test_id, challenger_model_id, champion_model_id, routing, "
    "traffic_percentage, "
    "split_version, status, started_at, started_by, started_offset, partition, mode, "
    "guardrails) VALUES (" + ",".join("?" * 13) + ")"
)
_INSERT_SPLIT = "INSERT INTO ab_test_splits VALUES (" + ",".join("?" * 8) + ")"
_UPDATE_AB = (
    "UPDATE ab_tests SET status = ?, stopped_at = ?, stopped_by = ?, stop_reason = ?, "
    "stopped_offset = ?, "
    "traffic_percentage = ?, split_version = ? WHERE test_id = ?"
)
_UPSERT_MODEL = "INSERT OR REPLACE INTO models VALUES (" + ",".join("?" * 27) + ")"
_INSERT_ERROR = "INSERT INTO projection_errors VALUES (" + ",".join("?" * 13) + ")"
_UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (topic, partition, next_offset) VALUES (?, ?, ?) "
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
)
SET_META = "INSERT OR REPLACE INTO projection_meta (key, value) VALUES (?, ?)"


class ProjectionWriter:
    """Owns the writer connection of one projection file."""

    def __init__(self, path: Path, *, bulk: bool = False) -> None:
        self.path = path
        self.bulk = bulk
        self._db: aiosqlite.Connection | None = None
        self._ident: tuple[int, int] | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise ProjectionUnavailable(f"projection {self.path} is not open")
        return self._db

    async def open(self) -> int | None:
        """Open (creating the file and tables if new); returns the file's schema version,
        None for a new file. A different version means the file must be rebuilt."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._connect()
        version = await self._schema_version()
        if version is None:
            await self._create()
        return version

    async def _connect(self) -> None:
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in writer_pragmas(self.bulk):
            await self._db.execute(pragma)
        self._ident = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file the path names now (a rebuild's swap changes it)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    async def _schema_version(self) -> int | None:
        async with self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'projection_meta'"
        ) as cur:
            if await cur.fetchone() is None:
                return None
        value = await self.meta("schema_version")
        return int(value) if value is not None else None

    async def _create(self) -> None:
        await self.db.execute("BEGIN IMMEDIATE")
        for ddl in TABLES:
            await self.db.execute(ddl)
        if not self.bulk:
            for ddl in INDEXES:
                await self.db.execute(ddl)
        await self.db.executemany(
            SET_META,
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("generation", str(uuid.uuid4())),
                (REGISTRY_REVISION_KEY, "0"),
            ],
        )
        await self.db.execute("COMMIT")

    async def create_indexes(self) -> None:
        """Build the secondary indexes (after a bulk load) and refresh the planner's statistics."""
        for ddl in INDEXES:
            await self.db.execute(ddl)
        await self.db.execute("ANALYZE")

    async def close(self) -> None:
        db, self._db, self._ident = self._db, None, None
        if db is not None:
            await db.close()

    async def meta(self, key: str) -> str | None:
        async with self.db.execute(
            "SELECT value FROM projection_meta WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, values: dict[str, str]) -> None:
        await self.db.executemany(SET_META, list(values.items()))

    async def checkpoints(self, topic: str) -> dict[int, int]:
        """``{partition: next_offset}`` as committed."""
        async with self.db.execute(
            "SELECT partition, next_offset FROM checkpoints WHERE topic = ?", (topic,)
        ) as cur:
            return {int(p): int(o) async for p, o in cur}

    async def last_stored(self, partition: int) -> tuple[int, bytes | None, str | None] | None:
        """The last record stored for ``partition``: (offset, value bytes), or (offset, None,
        digest) when it was unreadable."""
        async with self.db.execute(
            "SELECT offset, value FROM events WHERE partition = ? ORDER BY offset DESC LIMIT 1",
            (partition,),
        ) as cur:
            ev = await cur.fetchone()
        async with self.db.execute(
            "SELECT offset, value_sha256 FROM projection_errors WHERE partition = ? AND kind = "
            "'undecodable' "
            "ORDER BY offset DESC LIMIT 1",
            (partition,),
        ) as cur:
            bad = await cur.fetchone()
        if bad is not None and (ev is None or bad[0] > ev[0]):
            return int(bad[0]), None, bad[1]
        if ev is not None:
            return int(ev[0]), str(ev[1]).encode(), None
        return None

    async def load_chain(self) -> Chain:
        """The hash chain's tips, from the last believed event of each partition."""
        chain = Chain()
        async with self.db.execute(
            "SELECT e.partition, e.value FROM events e JOIN (SELECT partition, MAX(offset) AS o "
            "FROM events GROUP BY partition) last ON e.partition = last.partition "
            "AND e.offset = last.o"
        ) as cur:
            for partition, value in await cur.fetchall():
                raw = str(value).encode()
                tip = chain.tip(int(partition))
                tip.hash, tip.linked = record_hash(raw), orjson.loads(raw).get("prev") is not None
        return chain

    async def load_state(self) -> RegistryState:
        """The in-memory fold, reloaded from ``models`` (done once at start, never per batch).

        The rows hold exactly what the fold held: the config's wire JSON, the revision and
        the times as text, so nothing is validated again."""
        state = RegistryState()
        models = state.models
        async with self.db.execute(
            "SELECT model_id, config, revision, registered_at, updated_at, ab_test_id, "
            "champion_model_id, traffic_percentage, ab_routing, split_version, ab_started_at, "
            "aliases, served_by, replaces, ab_mode, ab_guardrails FROM models"
        ) as cur:
            for row in await cur.fetchall():
                mid, cfg, rev, reg_at, upd_at, test_id, champ, pct, routing, split, ab_at = row[:11]
                aliases, served_by, replaces, mode, guardrails = row[11:]
                ab = (
                    None
                    if test_id is None
                    else ActiveABTest(
                        test_id, champ, float(pct), routing, split, ab_at, mode, guardrails
                    )
                )
                models[mid] = ModelState(
                    loads(cfg),
                    rev,
                    reg_at,
                    upd_at,
                    ab,
                    tuple(loads(aliases)) if aliases else (),
                    served_by,
                    replaces,
                )
        state.registry_revision = int(await self.meta(REGISTRY_REVISION_KEY) or 0)
        state.reindex()
        return state

    async def write(self, topic: str, rows: BatchRows, expected: dict[int, int]) -> None:
        """Write ``rows`` and the new positions in one transaction.

        Raises:
            ProjectionReplaced: the stored positions are not ``expected`` (the file was
                rebuilt and swapped in, or another projector wrote); nothing is written.
        """
        if self._db is not None and self._identity() != self._ident:
            # A rebuild swapped a new generation in (projections.swap): write there, where
            # the positions will say whether this projector's state is still the file's.
            await self.close()
            await self._connect()
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            stored = await self.checkpoints(topic)
            if any(stored.get(p, 0) != expected.get(p, 0) for p in set(stored) | set(expected)):
                raise ProjectionReplaced(
                    f"projection {self.path} positions are {stored}, this projector expected "
                    f"{expected}"
                )
            for sql, params in batch_statements(topic, rows):
                if sql == INSERT_EVENTS:
                    for insert, flat in events_inserts(params):
                        await db.execute(insert, flat)
                else:
                    await db.executemany(sql, params)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


def batch_statements(topic: str, rows: BatchRows) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements of one batch's transaction, in order, with their parameter rows."""
    ops = [
        (sql, params)
        # Order matters where one batch inserts then updates the same row.
        for sql, params in (
            (INSERT_EVENTS, rows.events),
            (_INSERT_HISTORY, rows.status_history),
            (_UPSERT_VERSION, rows.versions),
            (_UPDATE_VERSION_METRICS, rows.version_metric_rows()),
            (_SUPERSEDE, rows.superseded),
            (_INSERT_AB, rows.ab_started),
            (_INSERT_SPLIT, rows.ab_splits),
            (_UPDATE_AB, rows.ab_updates),
            (_UPSERT_MODEL, rows.model_rows()),
            (_INSERT_ERROR, rows.errors),
        )
        if params
    ]
    if rows.registry_revision is not None:
        ops.append((SET_META, [(REGISTRY_REVISION_KEY, str(rows.registry_revision))]))
    ops.append((_UPSERT_CHECKPOINT, [(topic, p, o) for p, o in rows.positions.items()]))
    return ops
