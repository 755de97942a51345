"""Queries over the projection file: current state, versions, history, A/B tests, points in time.

Point lookups run on one open ``sqlite3`` connection in the caller's thread: an indexed
lookup takes microseconds, far less than a hop to a worker thread, and ``get_model`` must
serve tens of thousands of calls a second. Each call checks the file's identity (device,
inode) with one ``stat`` and reopens when the file was replaced, so a reader never keeps
reading a deleted file. A rebuild swaps content in with one SQLite transaction, which WAL
readers see atomically.

``get_model(id, as_of=...)`` folds the model's stored events with the one fold
(``RegistryState.apply``) up to a time or an offset: the answer is what the registry held at
that moment.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import orjson

from projections.audit import AuditEntry, entry_from_row
from projections.errors import ProjectionLagError, ProjectionUnavailable
from projections.pointintime import fold_as_of
from projections.views import (
    MODEL_COLUMNS,
    ABTestView,
    ModelView,
    SplitView,
    StatusChange,
    VersionView,
)
from registry.core.messages import REGISTRY_KEY
from registry.core.state import iso
from registry.core.types import Metrics, ModelConfig, ModelType, Provider, Status

__all__ = ["ProjectionReader"]

_GET = f"SELECT {MODEL_COLUMNS} FROM models WHERE model_id = ?"
_MODEL_COLUMN_SET = frozenset(c.strip() for c in MODEL_COLUMNS.split(","))
_TOUCHED_BY_OTHERS = (
    "SELECT 1 FROM events WHERE applied = 1 AND ("
    "(type = 'ChallengerPromoted' AND json_extract(value, '$.payload.championModelId') = ?1) OR "
    "(type = 'PromotionRolledBack' AND json_extract(value, '$.payload.restoredModelId') = ?1) OR "
    "(type = 'AliasAssigned' AND json_extract(value, '$.payload.previousModelId') = ?1)) LIMIT 1"
)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class ProjectionReader:
    """Read access to one projection file. ``open()`` it (or ``async with``) before use."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._conn: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None
        self._topic: str | None = None

    async def open(self) -> None:
        """Connect when the file exists; a missing file is tolerated until the first query."""
        if self.db_path.exists():
            self._connection()

    async def close(self) -> None:
        conn, self._conn, self._ident, self._topic = self._conn, None, None, None
        if conn is not None:
            conn.close()

    async def __aenter__(self) -> ProjectionReader:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ connection

    def _connection(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.db_path)
        except FileNotFoundError:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise ProjectionUnavailable(
                f"no projection at {self.db_path}; start the projector (`model-registry projector`)"
            ) from None
        ident = (st.st_dev, st.st_ino)
        if self._conn is not None and ident == self._ident:
            return self._conn
        if self._conn is not None:
            self._conn.close()
        uri = f"file:{quote(str(self.db_path.resolve()))}?mode=rw"  # rw: never create a file
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        # Lookups jump around a large file: keep its pages mapped and cached across queries.
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA mmap_size = 268435456")
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
        ).fetchone()
        if row is None:
            conn.close()
            raise ProjectionUnavailable(f"{self.db_path} holds no projection (yet)")
        self._conn, self._ident = conn, ident
        topic = conn.execute("SELECT value FROM projection_meta WHERE key = 'topic'").fetchone()
        self._topic = topic[0] if topic else None
        return conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

    # ------------------------------------------------------------------ models

    async def get_model(
        self, model_id: str, as_of: datetime | int | None = None
    ) -> ModelView | None:
        """The model now, or as of a time (``datetime``; naive means UTC) or an offset (``int``,
        in the model's partition of ``registry.events``). None if it was not registered then.
        An unregistered model is returned with status ``unregistered``."""
        if "@" in model_id:  # an alias: the model it names now (or as of then)
            named = self._alias_target(model_id, as_of)
            if named is None:
                return None
            model_id = named
        if as_of is None:
            row = self._connection().execute(_GET, (model_id,)).fetchone()
            return None if row is None else ModelView(row)
        return self._as_of(model_id, as_of)

    def _alias_target(self, alias: str, as_of: datetime | int | None) -> str | None:
        """The model ``alias`` names now, or named at ``as_of`` (from the alias events)."""
        conn = self._connection()
        if as_of is None:
            row = conn.execute(
                "SELECT model_id FROM model_aliases WHERE alias = ?", (alias,)
            ).fetchone()
            return None if row is None else str(row[0])
        cut_column, cut = (
            ("offset", as_of) if isinstance(as_of, int) else ("occurred_at", iso(as_of))
        )
        rows = conn.execute(
            "SELECT type, model_id, value FROM events WHERE applied = 1 AND type IN "
            "('AliasAssigned', 'AliasRemoved', 'ChallengerPromoted', 'PromotionRolledBack', "
            f"'RegistryCleared') AND {cut_column} <= ? ORDER BY partition, offset",
            (cut,),
        ).fetchall()
        target: str | None = None
        for kind, mid, value in rows:
            payload = orjson.loads(value).get("payload", {})
            if kind == "AliasAssigned" and payload.get("alias") == alias:
                target = mid
            elif (
                kind == "AliasRemoved"
                and payload.get("alias") == alias
                or kind == "RegistryCleared"
            ):
                target = None
            elif kind in ("ChallengerPromoted", "PromotionRolledBack") and alias in payload.get(
                "aliases", ()
            ):
                target = mid if kind == "ChallengerPromoted" else payload.get("restoredModelId")
        return target

    async def list_aliases(self) -> list[tuple[str, str, str, str]]:
        """Every alias: (alias, model id, version, status), by alias."""
        return [
            (str(a), str(m), str(v), str(s))
            for a, m, v, s in self._connection().execute(
                "SELECT alias, model_id, version, status FROM model_aliases ORDER BY alias"
            )
        ]

    def _as_of(self, model_id: str, as_of: datetime | int) -> ModelView | None:
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot for both reads
        try:
            own = conn.execute(
                "SELECT partition, offset, occurred_at, value FROM events "
                "WHERE model_id = ? AND applied = 1 ORDER BY partition, offset",
                (model_id,),
            ).fetchall()
            clears = (
                conn.execute(
                    "SELECT partition, offset, occurred_at, value FROM events "
                    "WHERE model_id = ? AND applied = 1 ORDER BY partition, offset",
                    (REGISTRY_KEY,),
                ).fetchall()
                if own
                else []
            )
            if own and conn.execute(_TOUCHED_BY_OTHERS, (model_id,)).fetchone() is not None:
                # Another model's event changed this one (a promotion over it, an alias taken
                # from it): its state then depends on theirs, so the whole log up to the cut
                # is folded (rare: only for models a promotion or an alias move touched).
                everything = conn.execute(
                    "SELECT partition, offset, occurred_at, value FROM events "
                    "WHERE applied = 1 AND model_id != ? ORDER BY partition, offset",
                    (REGISTRY_KEY,),
                ).fetchall()
                own_set = {(r[0], r[1]) for r in own}
                others = [r for r in everything if (r[0], r[1]) not in own_set]
                return fold_as_of(model_id, own, clears, as_of, others=others)
        finally:
            conn.execute("COMMIT")
        return fold_as_of(model_id, own, clears, as_of)

    async def list_models(
        self,
        type: ModelType | str | None = None,  # noqa: A002 - the spec's filter name
        status: Status | str | None = None,
        provider: Provider | str | None = None,
        *,
        include_unregistered: bool = False,
        limit: int | None = None,
        offset: int = 0,
        after: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[Any]:
        """Models by id, filtered; unregistered ones only when asked (or with
        ``status="unregistered"``).

        Paging: ``limit`` models at most, those with an id above ``after`` (a cursor: the
        last id of the previous page), skipping ``offset`` of them. Without ``columns`` the
        answer is ``ModelView``\\ s; with ``columns`` (names of the ``models`` table's columns)
        it is one ``dict`` per model holding those columns as stored (JSON columns as text),
        which skips building views nobody reads."""
        where, params = self._model_filter(type, status, provider, include_unregistered)
        if after is not None:
            where.append("model_id > ?")
            params.append(after)
        if columns is None:
            selected = MODEL_COLUMNS
        else:
            unknown = set(columns) - _MODEL_COLUMN_SET
            if unknown or not columns:
                raise ValueError(f"no such models columns: {sorted(unknown) or 'none asked'}")
            selected = ", ".join(columns)
        condition = " WHERE " + " AND ".join(where) if where else ""
        if limit is None and not offset and columns is None:
            # Sorted here, not by SQL: an ORDER BY can tempt the planner into a full scan in
            # id order instead of the filter's index.
            rows = self._query(f"SELECT {selected} FROM models{condition}", tuple(params))
            rows.sort()
        else:
            # The page's ids are chosen and sorted inside the filter's index (its last column
            # is the id), then only their rows are read.
            rows = self._query(
                f"SELECT {selected} FROM models WHERE model_id IN (SELECT model_id FROM models"
                f"{condition} ORDER BY model_id LIMIT ? OFFSET ?) ORDER BY model_id",
                (*params, -1 if limit is None else max(0, limit), offset),
            )
        if columns is None:
            return [ModelView(r) for r in rows]
        names = tuple(columns)
        return [dict(zip(names, r, strict=True)) for r in rows]

    async def count_models(
        self,
        type: ModelType | str | None = None,  # noqa: A002 - the spec's filter name
        status: Status | str | None = None,
        provider: Provider | str | None = None,
        *,
        include_unregistered: bool = False,
    ) -> int:
        """How many models ``list_models`` with these filters lists in all (a page's total)."""
        where, params = self._model_filter(type, status, provider, include_unregistered)
        sql = "SELECT count(*) FROM models"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self._query(sql, tuple(params))[0][0])

    @staticmethod
    def _model_filter(
        type: ModelType | str | None,  # noqa: A002 - the spec's filter name
        status: Status | str | None,
        provider: Provider | str | None,
        include_unregistered: bool,
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("type", type), ("status", status), ("provider", provider)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if status is None and not include_unregistered:
            where.append("status != 'unregistered'")
        return where, params

    async def list_versions(self, model_id: str) -> list[VersionView]:
        """Every version the id has carried, oldest first."""
        rows = self._query(
            "SELECT model_id, version, released_status, config, metrics, released_at, released_by, "
            "released_revision, partition, offset, superseded_at FROM model_versions WHERE "
            "model_id = ? "
            "ORDER BY major, minor, patch, released_at",
            (model_id,),
        )
        return [
            VersionView(
                r[0],
                r[1],
                Status(r[2]),
                ModelConfig.model_validate_json(r[3]),
                Metrics.model_validate_json(r[4]) if r[4] else None,
                datetime.fromisoformat(r[5]),
                r[6],
                r[7],
                r[8],
                r[9],
                _dt(r[10]),
            )
            for r in rows
        ]

    async def status_history(self, model_id: str) -> list[StatusChange]:
        """Every status transition of the model, in log order."""
        rows = self._query(
            "SELECT model_id, revision, from_status, to_status, changed_at, actor, reason, "
            "event_type, event_id, "
            "partition, offset FROM status_history WHERE model_id = ? ORDER BY partition, offset",
            (model_id,),
        )
        return [
            StatusChange(
                r[0],
                r[1],
                Status(r[2]) if r[2] else None,
                Status(r[3]),
                datetime.fromisoformat(r[4]),
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
            )
            for r in rows
        ]

    async def list_ab_tests(
        self, model_id: str | None = None, *, running: bool | None = None
    ) -> list[ABTestView]:
        """A/B tests (of ``model_id`` as champion or challenger), with their split versions."""
        where, params = [], []
        if model_id is not None:
            where.append("(champion_model_id = ? OR challenger_model_id = ?)")
            params += [model_id, model_id]
        if running is not None:
            where.append("status = ?")
            params.append("running" if running else "stopped")
        sql = (
            "SELECT test_id, challenger_model_id, champion_model_id, routing, traffic_percentage, "
            "split_version, "
            "status, started_at, started_by, stopped_at, stopped_by, stop_reason FROM ab_tests"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        tests = self._query(sql + " ORDER BY started_at, test_id", tuple(params))
        out = []
        for t in tests:
            splits = tuple(
                SplitView(s[0], s[1], s[2], datetime.fromisoformat(s[3]), s[4], s[5])
                for s in self._query(
                    "SELECT split_version, traffic_percentage, previous_percentage, changed_at, "
                    "actor, offset "
                    "FROM ab_test_splits WHERE test_id = ? ORDER BY split_version",
                    (t[0],),
                )
            )
            out.append(
                ABTestView(
                    t[0],
                    t[1],
                    t[2],
                    t[3],
                    t[4],
                    t[5],
                    t[6],
                    datetime.fromisoformat(t[7]),
                    t[8],
                    _dt(t[9]),
                    t[10],
                    t[11],
                    splits,
                )
            )
        return out

    async def model_events(self, model_id: str) -> list[AuditEntry]:
        """The model's events in log order, including registry-wide ones that named it."""
        rows = self._query(
            "SELECT partition, offset, timestamp_ms, applied, value FROM events "
            "WHERE model_id IN (?, ?) ORDER BY partition, offset",
            (model_id, REGISTRY_KEY),
        )
        entries = [entry_from_row(r) for r in rows]
        return [e for e in entries if e.model_id == model_id or e.names(model_id)]

    async def errors(self) -> list[dict[str, Any]]:
        """The rows of ``projection_errors`` (what was refused, and why)."""
        conn = self._connection()
        cur = conn.execute(
            "SELECT partition, offset, kind, reason, model_id, event_type, revision FROM "
            "projection_errors "
            "ORDER BY partition, offset"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # ------------------------------------------------------------------ positions

    async def positions(self) -> dict[int, int]:
        """``{partition: next offset to apply}`` as committed."""
        conn = self._connection()
        return {
            p: o
            for p, o in conn.execute(
                "SELECT partition, next_offset FROM checkpoints WHERE topic = ?", (self._topic,)
            )
        }

    def _next_offset(self, partition: int) -> int:
        conn = self._connection()
        if self._topic is None:  # a file just created: re-read the topic once it is recorded
            topic = conn.execute("SELECT value FROM projection_meta WHERE key = 'topic'").fetchone()
            self._topic = topic[0] if topic else None
        row = conn.execute(
            "SELECT next_offset FROM checkpoints WHERE topic = ? AND partition = ?",
            (self._topic, partition),
        ).fetchone()
        return int(row[0]) if row else 0

    async def wait_for_offset(self, partition: int, offset: int, timeout: float = 5.0) -> None:
        """Return once the projection has applied ``offset`` of ``partition`` (read-your-writes).

        Raises:
            ProjectionLagError: not reached within ``timeout`` seconds; says how far behind.
        """
        deadline = time.monotonic() + timeout
        pause = 0.001
        applied, detail = -1, ""
        while True:
            try:
                applied = self._next_offset(partition) - 1
                detail = ""
            except ProjectionUnavailable as exc:
                detail = str(exc)
            if applied >= offset:
                return
            if time.monotonic() >= deadline:
                raise ProjectionLagError(partition, offset, applied, timeout, detail)
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.005)
