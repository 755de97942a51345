"""Following registry.events: split changes, stopped tests, and unreadable events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from consumers.monitor.report import build_report
from consumers.monitor.service import Monitor
from registry.core import codec
from registry.core.messages import ChangeABTraffic, ChangeABTrafficPayload, StopABTest
from registry.core.predictions import PredictionResult
from registry.core.state import RegistryState
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    CHALLENGER,
    T0,
    ab_test_events,
    produce,
    produce_events,
    produce_results,
    query,
    registry_events,
    result,
)


async def test_split_change_and_stop_are_followed(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    state = RegistryState()
    events, test_id = ab_test_events(pct=20, state=state)
    events += registry_events(
        ChangeABTraffic(model_id=CHALLENGER, payload=ChangeABTrafficPayload(traffic_percentage=50)),
        state=state,
    )
    await produce_events(settings, events)
    v1 = [
        result(
            f"a{i}",
            "challenger" if i % 5 == 0 else "champion",
            test_id,
            output=1,
            at=T0 + timedelta(seconds=i),
        )
        for i in range(1000)
    ]
    v2 = [
        replace_split(result(f"b{i}", ("champion", "challenger")[i % 2], test_id, output=1), 2)
        for i in range(1000)
    ]
    await produce_results(settings, v1 + v2)
    monitor = make_monitor()
    await monitor.catch_up()
    assert query(db_path, "SELECT split_version, traffic_percentage FROM ab_splits ORDER BY 1") == [
        (1, 20.0),
        (2, 50.0),
    ]
    r = build_report(db_path, CHALLENGER)
    assert r.running
    assert r.configured_challenger_pct == 50.0
    assert r.split_version == 2
    # 200 of the first 1000 and 500 of the next 1000 went to the challenger: as configured.
    assert r.expected_challenger_share == pytest.approx(0.35)
    assert r.observed_challenger_share == pytest.approx(0.35)
    assert r.srm is not None
    assert r.srm.dof == 2
    assert r.srm.chi2 == pytest.approx(0.0)
    assert not r.srm.alert
    # Judged against the current split alone, this traffic would look like a mismatch.
    assert (700 - 1000) ** 2 / 1000 * 2 > 10.83

    await produce_events(settings, registry_events(StopABTest(model_id=CHALLENGER), state=state))
    await monitor.catch_up()
    r = build_report(db_path, test_id)
    assert not r.running
    assert r.stopped_at is not None
    assert query(db_path, "SELECT running FROM ab_comparison WHERE test_id = ?", test_id) == [(0,)]


def replace_split(r: PredictionResult, split_version: int) -> PredictionResult:
    return r.model_copy(update={"split_version": split_version})


async def test_unreadable_or_out_of_sequence_registry_events_are_skipped(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=20)
    await produce(settings, "registry.events", [(b"x", b"garbage")])
    await produce_events(settings, events)
    stray = events[-1].model_copy(update={"revision": 9, "id": "stray"})  # a revision gap
    await produce(settings, "registry.events", [(b"m", codec.encode(stray))])
    await produce_results(settings, [result("r1", "challenger", test_id, output=1)])
    monitor = make_monitor()
    await monitor.catch_up()
    assert monitor.stats.registry_unreadable == 2
    assert monitor.stats.registry_events == 3
    assert monitor.stats.results == 1
    assert query(db_path, "SELECT test_id, traffic_percentage FROM ab_tests") == [(test_id, 20.0)]
    assert query(db_path, "SELECT model_id, type FROM models ORDER BY 1") == [
        ("lead-scoring-v1", "classification"),
        ("lead-scoring-v2", "classification"),
    ]
