"""Comparing projection files with each other and with an in-memory fold of the log."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from registry.core.messages import EventBase
from registry.core.state import RegistryState

DATA_TABLES = (
    "models",
    "model_versions",
    "status_history",
    "ab_tests",
    "ab_test_splits",
    "events",
    "projection_errors",
    "checkpoints",
)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table's rows in a canonical order (query results, byte for byte)."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in DATA_TABLES:
            n = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
            order = ", ".join(str(i) for i in range(1, n + 1))
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM projection_meta").fetchall())
        meta.pop("generation", None)  # a random id per file
        out["projection_meta"] = sorted(meta.items())
        return out
    finally:
        conn.close()


def assert_same_tables(a: Path, b: Path) -> None:
    da, db = dump(a), dump(b)
    for table in da:
        assert da[table] == db[table], f"table {table} differs"


def expected_transitions(events: Sequence[EventBase]) -> list[tuple[str, str | None, str, int]]:
    """(model, from, to, offset) of every status change, computed independently of the projector."""
    state = RegistryState()
    out: list[tuple[str, str | None, str, int]] = []
    for offset, event in enumerate(events):
        # any model may change: a clear changes all, a promotion or a rollback the other one
        touched = list(dict.fromkeys([*state.models, event.model_id]))
        before = {mid: state.models[mid].status for mid in touched if mid in state.models}
        state.apply_event(event)
        for mid in touched:
            if mid not in state.models:
                continue
            old, new = before.get(mid), state.models[mid].status
            if old is not new:
                out.append((mid, None if old is None else str(old), str(new), offset))
    return sorted(out, key=_key)


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("" if v is None else v for v in row)


def assert_matches_fold(path: Path, events: Sequence[EventBase]) -> None:
    """The file holds exactly the fold of ``events`` (produced at offsets 0..n-1 of partition 0)."""
    state = RegistryState()
    for event in events:
        state.apply_event(event)
    conn = sqlite3.connect(path)
    try:
        stored = conn.execute(
            "SELECT offset, event_id, applied FROM events ORDER BY offset"
        ).fetchall()
        assert stored == [(i, e.id, 1) for i, e in enumerate(events)], "events table is not the log"
        models = {
            r[0]: r
            for r in conn.execute(
                "SELECT model_id, version, status, revision, config, ab_test_id FROM models"
            )
        }
        assert set(models) == set(state.models)
        for mid, s in state.models.items():
            row = models[mid]
            assert (row[1], row[2], row[3]) == (s.config.version, str(s.status), s.revision), mid
            assert row[5] == (s.ab_test.test_id if s.ab_test else None), mid
        history = conn.execute(
            "SELECT model_id, from_status, to_status, offset FROM status_history"
        ).fetchall()
        assert sorted(history, key=_key) == expected_transitions(events)
        versions = {(m, v) for m, v in conn.execute("SELECT model_id, version FROM model_versions")}
        seen: set[tuple[str, str]] = set()
        replay = RegistryState()
        for event in events:
            replay.apply_event(event)
            if event.model_id in replay.models:
                seen.add((event.model_id, replay.models[event.model_id].config.version))
        assert versions == seen
        checkpoint = conn.execute("SELECT next_offset FROM checkpoints").fetchall()
        assert checkpoint == [(len(events),)]
        assert conn.execute("SELECT count(*) FROM projection_errors").fetchone() == (0,)
    finally:
        conn.close()
