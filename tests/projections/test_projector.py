"""The projector against the real broker: reads, integrity, rebuild, read-your-writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from projections import (
    ProjectionLagError,
    ProjectionReader,
    ProjectionUnavailable,
    Projector,
    rebuild,
)
from projections.schema import SCHEMA_VERSION, projection_path
from registry.core import codec
from registry.core.messages import (
    ReasonPayload,
    StartABTest,
    StartABTestPayload,
    UnregisterModel,
)
from registry.core.types import ModelType, Provider, Status
from registry.infra.settings import Settings
from tests.helpers import read_topic
from tests.projections.tables import assert_matches_fold, assert_same_tables, dump
from tests.projections.workload import (
    History,
    produce,
    produce_raw,
    random_history,
    register,
    status,
)


@contextlib.asynccontextmanager
async def running(projector: Projector) -> AsyncIterator[asyncio.Task[None]]:
    """The projector's ``run`` as a task, stopped (and checked) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await asyncio.wait_for(projector.ready.wait(), 30)
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_applied(reader: ProjectionReader, offset: int, timeout: float = 20) -> None:
    await reader.wait_for_offset(0, offset, timeout=timeout)


def catalogue() -> History:
    h = History()
    h.do(register("lead-v1", status=Status.ACTIVE, provider=Provider.SCIKIT_LEARN))
    h.do(register("lead-v2", status=Status.TESTING, provider=Provider.AWS_SAGEMAKER))
    h.do(
        register(
            "churn", status=Status.TRAINING, mtype=ModelType.REGRESSION, provider=Provider.PYTORCH
        )
    )
    h.do(register("old", status=Status.ACTIVE, mtype=ModelType.NLP, provider=Provider.OPENAI))
    h.do(status("lead-v2", Status.ACTIVE, reason="validation passed"))
    h.do(
        StartABTest(
            model_id="lead-v2",
            payload=StartABTestPayload(champion_model_id="lead-v1", traffic_percentage=20),
        )
    )
    h.do(status("old", Status.DEPRECATED))
    h.do(UnregisterModel(model_id="old", payload=ReasonPayload(reason="grace period over")))
    return h


async def test_catch_up_then_every_read(settings: Settings) -> None:
    h = catalogue()
    await produce(settings, h.events)
    db = projection_path(settings)
    projector = Projector(settings, db)
    assert await projector.catch_up() == len(h.events)
    assert projector.stats.events_applied == len(h.events)
    assert projector.stats.lag == 0
    async with ProjectionReader(db) as reader:
        v2 = await reader.get_model("lead-v2")
        assert v2 is not None
        assert (v2.status, v2.revision, v2.version, v2.config.provider) == (
            Status.ACTIVE,
            3,
            "1.0.0",
            Provider.AWS_SAGEMAKER,
        )
        assert (v2.ab_test_id, v2.champion_model_id, v2.traffic_percentage, v2.split_version) == (
            "ab:lead-v2:3",
            "lead-v1",
            20,
            1,
        )
        assert v2.config == h.state.models["lead-v2"].config
        assert await reader.get_model("nope") is None
        assert [m.model_id for m in await reader.list_models()] == ["churn", "lead-v1", "lead-v2"]
        assert [
            m.model_id for m in await reader.list_models(type="classification", status="active")
        ] == ["lead-v1", "lead-v2"]
        assert [m.model_id for m in await reader.list_models(provider=Provider.PYTORCH)] == [
            "churn"
        ]
        assert [m.model_id for m in await reader.list_models(status=Status.UNREGISTERED)] == ["old"]
        assert len(await reader.list_models(include_unregistered=True)) == 4
        history = await reader.status_history("old")
        assert [(c.from_status, c.to_status) for c in history] == [
            (None, Status.ACTIVE),
            (Status.ACTIVE, Status.DEPRECATED),
            (Status.DEPRECATED, Status.UNREGISTERED),
        ]
        assert history[-1].reason == "grace period over"
        assert [v.version for v in await reader.list_versions("lead-v1")] == ["1.0.0"]
        (test,) = await reader.list_ab_tests("lead-v1")
        assert test.running
        assert test.challenger_model_id == "lead-v2"
        assert len(test.splits) == 1
        events = await reader.model_events("old")
        assert [e.type for e in events] == [
            "ModelRegistered",
            "ModelStatusChanged",
            "ModelUnregistered",
        ]
        assert await reader.positions() == {0: len(h.events)}


async def test_point_in_time_answers_match_the_states_seen(settings: Settings) -> None:
    h = History()
    seen = []  # (model id, occurred_at, offset, state then)
    random_history(300, seed=11, n_models=6, history=h)
    state = type(h.state)()
    for offset, event in enumerate(h.events):
        state.apply_event(event)
        if event.model_id in state.models:
            seen.append((event.model_id, event.occurred_at, offset, state.models[event.model_id]))
    await produce(settings, h.events)
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    async with ProjectionReader(db) as reader:
        for model_id, at, offset, then in seen[::7]:
            for as_of in (at, at + timedelta(milliseconds=500), offset):
                view = await reader.get_model(model_id, as_of=as_of)
                assert view is not None
                assert (view.config, view.revision, view.updated_at) == (
                    then.config,
                    then.revision,
                    datetime.fromisoformat(then.updated_at),
                )
                assert view.ab_test_id == (then.ab_test.test_id if then.ab_test else None)
        first_id, first_at, first_offset, _ = seen[0]
        assert await reader.get_model(first_id, as_of=first_at - timedelta(seconds=1)) is None
        # the latest moment is the current state, row for row
        for model_id in h.state.models:
            assert await reader.get_model(model_id, as_of=len(h.events)) == await reader.get_model(
                model_id
            )


async def test_bad_revision_and_garbage_are_reported_and_the_projector_goes_on(
    settings: Settings,
) -> None:
    h = History()
    h.do(register("m1"))
    good = h.do(status("m1", Status.TESTING))[0]
    stray = good.model_copy(update={"id": "stray", "revision": 9})
    db = projection_path(settings)
    projector = Projector(settings, db)
    async with running(projector) as task, ProjectionReader(db) as reader:
        await produce(settings, h.events)
        await produce(settings, [stray])
        await produce_raw(settings, [(b"m1", b"{not json", [("type", b"ModelStatusChanged")])])
        last = await produce(settings, h.do(status("m1", Status.ACTIVE)))
        await wait_applied(reader, last[-1])
        assert not task.done()
        errors = await reader.errors()
        assert [(e["offset"], e["kind"]) for e in errors] == [
            (2, "revision_gap"),
            (3, "undecodable"),
        ]
        view = await reader.get_model("m1")
        assert view is not None
        assert (view.status, view.revision) == (Status.ACTIVE, 3)
    assert projector.stats.errors == 2
    assert projector.stats.dead_letters == 1
    (dead,) = await read_topic(settings, "registry.events.dlq")
    headers = dict(dead.headers)
    assert dead.value == b"{not json"
    assert headers["dlq.source.offset"] == b"3"
    assert b"malformed JSON" in headers["dlq.reason"]


async def test_rebuild_gives_the_same_tables_as_the_incremental_projection(
    settings: Settings, tmp_path: Path
) -> None:
    h = random_history(1500, seed=7, n_models=30)
    db = projection_path(settings)
    chunks = [h.events[i : i + 400] for i in range(0, len(h.events), 400)]
    for n, chunk in enumerate(chunks):
        await produce(settings, chunk)
        if n == 1:
            await produce_raw(settings, [(b"x", b"\x00garbage", [])])
        await Projector(settings, db, max_records=97 + n * 50).catch_up()
    fresh = tmp_path / "fresh.db"
    result = await rebuild(settings, fresh)
    assert result.records == len(h.events) + 1
    assert result.errors == 1
    assert_same_tables(db, fresh)
    async with ProjectionReader(db) as reader:
        before = await reader.list_models(include_unregistered=True)
        await rebuild(settings, db)  # swapped in under an open reader
        assert await reader.list_models(include_unregistered=True) == before
    assert_same_tables(db, fresh)


async def test_a_clean_log_projects_to_exactly_its_fold(settings: Settings) -> None:
    h = random_history(800, seed=3, n_models=20)
    await produce(settings, h.events)
    db = projection_path(settings)
    await Projector(settings, db, max_records=64).catch_up()
    assert_matches_fold(db, h.events)


async def test_wait_for_offset_is_read_your_writes_or_a_typed_lag_error(settings: Settings) -> None:
    h = History()
    offsets = await produce(settings, h.do(register("m1")))
    db = projection_path(settings)
    async with ProjectionReader(db) as reader:
        with pytest.raises(ProjectionLagError) as info:
            await reader.wait_for_offset(0, offsets[0], timeout=0.05)
        assert info.value.code == "ProjectionLag"
        assert info.value.behind == 1
        async with running(Projector(settings, db)):
            await reader.wait_for_offset(0, offsets[0], timeout=10)
            more = await produce(settings, h.do(status("m1", Status.TESTING)))
            await reader.wait_for_offset(0, more[0], timeout=10)
            view = await reader.get_model("m1")
            assert view is not None
            assert view.status is Status.TESTING
            with pytest.raises(ProjectionLagError) as info:
                await reader.wait_for_offset(0, more[0] + 5, timeout=0.05)
            assert info.value.applied_up_to == more[0]
            assert info.value.behind == 5


async def test_a_schema_version_bump_rebuilds_at_start(settings: Settings) -> None:
    h = random_history(200, seed=2, n_models=8)
    await produce(settings, h.events)
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    before = dump(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE projection_meta SET value = '0' WHERE key = 'schema_version'")
    conn.execute("DELETE FROM models")  # what a different schema would not have
    conn.commit()
    conn.close()
    await Projector(settings, db).catch_up()
    assert dump(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT value FROM projection_meta WHERE key = 'schema_version'"
    ).fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


async def test_a_rebuild_under_a_running_projector_is_picked_up(
    settings: Settings, tmp_path: Path
) -> None:
    h = random_history(300, seed=4, n_models=10)
    await produce(settings, h.events[:200])
    db = projection_path(settings)
    projector = Projector(settings, db)
    async with running(projector), ProjectionReader(db) as reader:
        await wait_applied(reader, 199)
        await produce(settings, h.events[200:250])
        await rebuild(settings, db)
        offsets = await produce(settings, h.events[250:])
        await wait_applied(reader, offsets[-1])
    await rebuild(settings, tmp_path / "fresh.db")
    assert_same_tables(db, tmp_path / "fresh.db")
    assert_matches_fold(db, h.events)


async def test_reader_follows_a_deleted_and_recreated_file(settings: Settings) -> None:
    h = History()
    await produce(settings, h.do(register("m1")))
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    async with ProjectionReader(db) as reader:
        assert await reader.get_model("m1") is not None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db}{suffix}")
        with pytest.raises(ProjectionUnavailable):
            await reader.get_model("m1")
        await produce(settings, h.do(status("m1", Status.TESTING)))
        await rebuild(settings, db)
        view = await reader.get_model("m1")
        assert view is not None
        assert view.status is Status.TESTING


async def test_garbage_value_types_never_reach_the_tables(settings: Settings) -> None:
    h = History()
    records = [(b"k", codec.encode(e), codec.headers_for(e)) for e in h.do(register("m1"))]
    records += [
        (b"k", None, []),
        (b"k", b"", []),
        (b"k", b"null", []),
        (b"k", "ünïcode".encode("latin-1"), []),
    ]
    await produce_raw(settings, records)
    db = projection_path(settings)
    projector = Projector(settings, db)
    assert await projector.catch_up() == 5
    async with ProjectionReader(db) as reader:
        assert [e["kind"] for e in await reader.errors()] == ["undecodable"] * 4
        assert [m.model_id for m in await reader.list_models()] == ["m1"]


async def test_readers_see_the_old_or_the_new_projection_during_a_swap(settings: Settings) -> None:
    h = random_history(1200, seed=9, n_models=30)
    await produce(settings, h.events[:400])
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    await produce(settings, h.events[400:])
    seen: set[int] = set()
    done = asyncio.Event()

    async def watch() -> None:
        async with ProjectionReader(db) as reader:
            while not done.is_set():
                conn = reader._connection()  # one consistent count per read transaction
                seen.add(conn.execute("SELECT count(*) FROM events").fetchone()[0])
                await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        await rebuild(settings, db)
    finally:
        done.set()
        await watcher
    assert seen == {400, 1200}  # before the swap, after it, and nothing in between
    assert_matches_fold(db, h.events)


async def test_a_clean_stop_applies_what_the_log_holds(settings: Settings) -> None:
    h = random_history(300, seed=12, n_models=10)
    await produce(settings, h.events)
    db = projection_path(settings)
    stop = asyncio.Event()
    stop.set()  # asked to stop before it even started following the log
    projector = Projector(settings, db)
    await projector.run(stop)
    assert projector.stats.records == 300
    assert_matches_fold(db, h.events)
