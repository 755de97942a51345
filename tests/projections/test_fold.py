"""The fold and the writer on a real SQLite file, fed records directly (no broker needed)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.errors import ProjectionReplaced
from projections.rows import fold_batch
from projections.writer import ProjectionWriter
from registry.core import codec
from registry.core.messages import (
    ClearRegistry,
    ClearRegistryPayload,
    EventBase,
    ModelStatusChanged,
)
from registry.core.state import RegistryState
from registry.core.types import Metrics, ModelType, Status
from tests.projections.tables import assert_matches_fold, assert_same_tables
from tests.projections.workload import History, random_history, register, status

TOPIC = "t.registry.events"


def record(
    offset: int,
    value: bytes | None,
    key: bytes | None = b"k",
    headers: Sequence[tuple[str, bytes]] = (),
) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(
        TOPIC, 0, offset, 1_700_000_000_000 + offset, 0, key, value, None, 0, 0, tuple(headers)
    )


def records_of(events: Sequence[EventBase], start: int = 0) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    return [
        record(start + i, codec.encode(e), e.model_id.encode(), codec.headers_for(e))
        for i, e in enumerate(events)
    ]


async def build(
    path: Path, records: Sequence[ConsumerRecord], cuts: Sequence[int] = ()
) -> RegistryState:  # type: ignore[type-arg]
    """Project ``records`` into ``path`` in batches split at ``cuts``."""
    writer = ProjectionWriter(path)
    await writer.open()
    state = RegistryState()
    positions: dict[int, int] = {}
    bounds = [0, *sorted(set(cuts)), len(records)]
    try:
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if lo == hi:
                continue
            rows = fold_batch(state, records[lo:hi])
            await writer.write(TOPIC, rows, positions)
            positions.update(rows.positions)
    finally:
        await writer.close()
    return state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_any_batching_yields_the_same_tables_as_the_fold(
    seed: int, n: int, cuts: list[int]
) -> None:
    events = random_history(n, seed=seed, n_models=8).events
    recs = records_of(events)
    with TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.db", Path(tmp) / "b.db"
        asyncio.run(build(a, recs, [c for c in cuts if c < n]))
        asyncio.run(build(b, recs))
        assert_same_tables(a, b)
        assert_matches_fold(a, events)


async def test_out_of_sequence_revision_is_reported_and_not_applied(tmp_path: Path) -> None:
    h = History()
    h.do(register("m1", status=Status.TRAINING))
    good = h.do(status("m1", Status.TESTING))[0]
    stray = good.model_copy(
        update={"id": "stray", "revision": 7}
    )  # a writer that is not the decider
    later = h.do(status("m1", Status.ACTIVE))[0]
    db = tmp_path / "p.db"
    state = await build(db, records_of([h.events[0], good, stray, later]))
    assert state.models["m1"].revision == 3
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT offset, kind, model_id, revision FROM projection_errors"
    ).fetchall() == [(2, "revision_gap", "m1", 7)]
    assert (
        "expected revision 3, got 7"
        in conn.execute("SELECT reason FROM projection_errors").fetchone()[0]
    )
    assert conn.execute("SELECT offset, applied FROM events ORDER BY offset").fetchall() == [
        (0, 1),
        (1, 1),
        (2, 0),
        (3, 1),
    ]
    assert conn.execute("SELECT status, revision FROM models").fetchone() == ("active", 3)
    assert conn.execute("SELECT count(*) FROM status_history").fetchone() == (3,)


SECRET = "sk-live-0123456789abcdef"
GARBAGE = [
    (b"not json at all", "malformed JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'{"type": "ModelExploded", "id": "x"}', "unknown event type"),
    (
        b'{"type": "ModelStatusChanged", "id": "x", "model_id": "m1", "revision": 1}',
        "invalid ModelStatusChanged",
    ),
    (
        orjson.dumps(
            {
                "type": "ModelRegistered",
                "id": "y",
                "model_id": "m9",
                "revision": 1,
                "payload": {
                    "id": "m9",
                    "name": "n",
                    "version": "1.0.0",
                    "type": "nlp",
                    "provider": "openai",
                    "credentials": {"apiKey": SECRET},
                },
            }
        ),
        "raw secret",
    ),
    (None, "empty message"),
]


async def test_unreadable_records_are_reported_with_a_reason_and_never_stored(
    tmp_path: Path,
) -> None:
    h = History()
    h.do(register("m1"))
    recs = [*records_of(h.events), *(record(1 + i, v) for i, (v, _) in enumerate(GARBAGE))]
    after = h.do(status("m1", Status.TESTING))
    recs += records_of(after, start=len(recs))
    state = RegistryState()
    rows = fold_batch(state, recs)
    assert [reason for _, reason in rows.dead_letters] == [r[3] for r in rows.errors]
    for (_, expected), (_, reason) in zip(GARBAGE, rows.dead_letters, strict=True):
        assert expected in reason
    assert state.models["m1"].status == "testing"  # the batch went on past the garbage
    db = tmp_path / "p.db"
    await build(db, recs)
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT count(*) FROM projection_errors WHERE kind = 'undecodable'"
    ).fetchone() == (6,)
    conn.close()
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()


async def test_registry_cleared_unregisters_live_models_and_keeps_history(tmp_path: Path) -> None:
    h = History()
    h.do(register("a", status=Status.ACTIVE))
    h.do(register("b", status=Status.TRAINING))
    h.do(register("gone", status=Status.ACTIVE))
    h.do(status("gone", Status.DEPRECATED))
    h.do(
        ClearRegistry(payload=ClearRegistryPayload(reason="test reset", confirm=True), actor="ops")
    )
    db = tmp_path / "p.db"
    await build(db, records_of(h.events))
    conn = sqlite3.connect(db)
    assert dict(conn.execute("SELECT model_id, status FROM models")) == {
        "a": "unregistered",
        "b": "unregistered",
        "gone": "unregistered",
    }
    cleared = conn.execute(
        "SELECT model_id, from_status, reason, actor FROM status_history WHERE event_type = "
        "'RegistryCleared' ORDER BY 1"
    ).fetchall()
    assert cleared == [
        ("a", "active", "test reset", "ops"),
        ("b", "training", "test reset", "ops"),
        ("gone", "deprecated", "test reset", "ops"),
    ]
    assert conn.execute("SELECT count(*) FROM status_history").fetchone() == (7,)
    assert conn.execute(
        "SELECT value FROM projection_meta WHERE key = 'registry_revision'"
    ).fetchone() == ("1",)


async def test_versions_metrics_and_ab_tests_are_tracked(tmp_path: Path) -> None:
    from registry.core.messages import (
        ChangeABTraffic,
        ChangeABTrafficPayload,
        ReasonPayload,
        RecordMetrics,
        RecordMetricsPayload,
        ReleaseVersion,
        ReleaseVersionPayload,
        StartABTest,
        StartABTestPayload,
        StopABTest,
    )

    h = History()
    h.do(register("champ", status=Status.ACTIVE))
    h.do(register("chall", status=Status.ACTIVE, mtype=ModelType.CLASSIFICATION))
    h.do(
        RecordMetrics(model_id="chall", payload=RecordMetricsPayload(metrics=Metrics(accuracy=80)))
    )
    h.do(
        ReleaseVersion(
            model_id="chall",
            payload=ReleaseVersionPayload(version="1.1.0", metrics=Metrics(accuracy=85)),
        )
    )
    h.do(
        RecordMetrics(model_id="chall", payload=RecordMetricsPayload(metrics=Metrics(accuracy=88)))
    )
    h.do(
        StartABTest(
            model_id="chall",
            payload=StartABTestPayload(champion_model_id="champ", traffic_percentage=20),
        )
    )
    h.do(ChangeABTraffic(model_id="chall", payload=ChangeABTrafficPayload(traffic_percentage=50)))
    h.do(StopABTest(model_id="chall", payload=ReasonPayload(reason="challenger wins")))
    db = tmp_path / "p.db"
    await build(db, records_of(h.events))
    conn = sqlite3.connect(db)
    versions = conn.execute(
        "SELECT version, json_extract(metrics, '$.accuracy'), superseded_at IS NOT NULL FROM "
        "model_versions "
        "WHERE model_id = 'chall' ORDER BY major, minor, patch"
    ).fetchall()
    assert versions == [("1.0.0", 80.0, 1), ("1.1.0", 88.0, 0)]
    test = conn.execute(
        "SELECT test_id, champion_model_id, traffic_percentage, split_version, status, stop_reason "
        "FROM ab_tests"
    ).fetchall()
    assert test == [("ab:chall:5", "champ", 50.0, 2, "stopped", "challenger wins")]
    splits = conn.execute(
        "SELECT split_version, traffic_percentage, previous_percentage FROM ab_test_splits"
    ).fetchall()
    assert sorted(splits) == [(1, 20.0, None), (2, 50.0, 20.0)]
    assert conn.execute("SELECT ab_test_id FROM models WHERE model_id = 'chall'").fetchone() == (
        None,
    )


async def test_writer_refuses_a_batch_when_the_positions_changed_under_it(tmp_path: Path) -> None:
    h = History()
    h.do(register("m1"))
    db = tmp_path / "p.db"
    await build(db, records_of(h.events))
    writer = ProjectionWriter(db)
    await writer.open()
    try:
        more = h.do(status("m1", Status.TESTING))
        state = await writer.load_state()
        rows = fold_batch(state, records_of(more, start=1))
        with pytest.raises(ProjectionReplaced):
            await writer.write(TOPIC, rows, {})  # this writer believes nothing was written yet
        assert await writer.checkpoints(TOPIC) == {0: 1}  # nothing of the refused batch landed
        await writer.write(TOPIC, rows, {0: 1})
        assert await writer.checkpoints(TOPIC) == {0: 2}
    finally:
        await writer.close()


async def test_state_reloaded_from_the_file_equals_the_fold(tmp_path: Path) -> None:
    events = random_history(400, seed=5, n_models=12).events
    db = tmp_path / "p.db"
    folded = await build(db, records_of(events))
    writer = ProjectionWriter(db)
    await writer.open()
    try:
        loaded = await writer.load_state()
    finally:
        await writer.close()
    assert loaded.models == folded.models
    assert loaded.registry_revision == folded.registry_revision


def test_status_change_payload_is_what_the_history_shows() -> None:
    h = History()
    h.do(register("m1"))
    (event,) = h.do(status("m1", Status.TESTING, reason="training done", actor="alice"))
    assert isinstance(event, ModelStatusChanged)
    rows = fold_batch(RegistryState(), records_of(h.events))
    assert rows.status_history[-1][2:8] == (
        "training",
        "testing",
        rows.status_history[-1][4],
        "alice",
        "training done",
        "ModelStatusChanged",
    )
