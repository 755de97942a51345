"""Issue 15, item 4 (monitor side): shadow tests. The champion answers every request; a share
of them is mirrored to the challenger, whose answers come on ``predictions.shadow``. Records
go through the real path: Kafka (embedded broker), the monitor, a SQLite file, the report."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from consumers.monitor.report import (
    VERDICT_SHADOW_WORSE,
    VERDICT_WAIT,
    build_report,
)
from consumers.monitor.schema import SCHEMA_VERSION
from consumers.monitor.service import Monitor
from consumers.monitor.store import MonitorStore
from model_registry.cli.monitor import report_cmd
from registry.core.messages import RegisterModel, StartABTest, StartABTestPayload
from registry.core.predictions import PredictionResult, result_id
from registry.core.state import ab_test_id
from registry.core.types import ModelConfig
from registry.infra.kafka.topics import TOPICS
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    CHALLENGER,
    CHAMPION,
    T0,
    outcome,
    produce,
    produce_events,
    produce_outcomes,
    produce_results,
    query,
    registry_events,
    result,
    wire,
)
from tests.helpers import read_topic


def shadow_test_events(pct: float = 50.0, model_type: str = "classification") -> tuple[Any, str]:
    """An active champion, a challenger in ``testing``, and a shadow test between them."""
    cfgs = [
        ModelConfig.model_validate(
            {
                "id": m,
                "name": m,
                "version": "1.0.0",
                "type": model_type,
                "provider": "custom",
                "providerConfig": {
                    "provider": "custom",
                    "callable": "tests.consumers.monitor.streams:score",
                },
                "status": status,
            }
        )
        for m, status in ((CHAMPION, "active"), (CHALLENGER, "testing"))
    ]
    start = StartABTestPayload(champion_model_id=CHAMPION, traffic_percentage=pct, mode="shadow")
    events = registry_events(
        *(RegisterModel(model_id=c.id, payload=c) for c in cfgs),
        StartABTest(model_id=CHALLENGER, payload=start),
    )
    return events, ab_test_id(CHALLENGER, 2)


def shadow(
    request_id: str,
    test_id: str,
    *,
    output: Any = None,
    error: str | None = None,
    latency_ms: float = 30.0,
    at: Any = T0,
) -> PredictionResult:
    """The shadow's answer to the mirrored copy of ``request_id``."""
    r = result(
        request_id,
        "challenger",
        test_id,
        output=output,
        error=error,
        latency_ms=latency_ms,
        at=at,
    )
    return r.model_copy(update={"variant": "shadow", "id": result_id(f"{request_id}/shadow")})


async def produce_shadows(settings: Settings, results: list[PredictionResult]) -> int:
    return await produce(
        settings, "predictions.shadow", ((r.request_id.encode(), wire(r)) for r in results)
    )


def mirrored(i: int) -> bool:
    return i % 2 == 0


async def _catch_up(make_monitor: Callable[..., Monitor]) -> Monitor:
    monitor = make_monitor()
    await monitor.catch_up()
    await monitor.close()
    return monitor


async def test_a_shadow_that_always_agrees_has_agreement_one(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    n = 400
    champion = [
        result(f"req-{i}", "champion", test_id, output={"label": i % 3 == 0, "score": 0.5})
        for i in range(n)
    ]
    shadows = [
        shadow(f"req-{i}", test_id, output={"label": i % 3 == 0, "score": 0.7})
        for i in range(n)
        if mirrored(i)
    ]
    await produce_results(settings, champion)
    await produce_shadows(settings, shadows)
    monitor = await _catch_up(make_monitor)
    assert (monitor.stats.results, monitor.stats.shadow_results) == (n, n // 2)
    assert monitor.stats.shadow_pairs == n // 2
    assert monitor.stats.duplicate_results == 0  # the shadow shares the champion's request id

    r = build_report(db_path, test_id)
    assert r.mode == "shadow"
    assert r.challenger.variant == "shadow"
    assert r.challenger.model_id == CHALLENGER
    assert (r.champion.requests, r.challenger.requests) == (n, n // 2)
    assert r.challenger.share == pytest.approx(0.5)
    assert r.expected_challenger_share == pytest.approx(0.5)
    assert r.srm is None
    assert r.srm_sequential_p_value is None
    g = r.agreement
    assert g is not None
    assert (g.pairs, g.compared, g.agreements, g.unpaired) == (n // 2, n // 2, n // 2, 0)
    assert g.agreement_rate == 1.0
    assert g.mean_abs_difference is None  # labels: no values to subtract
    assert r.verdict == VERDICT_WAIT  # no errors, no outcomes: nothing decides
    assert any("agreement 100.00%" in x for x in r.reasons)
    # The latency of the shadow's own answers is its own.
    assert r.challenger.latency_ms["p50"] == pytest.approx(30.0, rel=0.2)
    assert r.champion.latency_ms["p50"] == pytest.approx(10.0, rel=0.2)

    data = r.to_dict()
    assert data["mode"] == "shadow"
    assert data["agreement"]["agreement_rate"] == 1.0
    assert data["agreement"]["compared"] == n // 2
    assert data["challenger"]["variant"] == "shadow"
    orjson.dumps(data)  # JSON-ready
    # The shadow is not part of the split test views (champion/challenger only).
    assert query(db_path, "SELECT variant FROM ab_variant_summary") == [("champion",)]
    assert query(db_path, "SELECT mode FROM ab_tests WHERE test_id = ?", test_id) == [("shadow",)]

    out = CliRunner().invoke(report_cmd, [test_id, "--json", "--db", str(db_path)])
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.output)["agreement"]["agreement_rate"] == 1.0
    out = CliRunner().invoke(report_cmd, [test_id, "--db", str(db_path)])
    assert out.exit_code == 0, out.output
    assert "Shadow test" in out.output
    assert "agreement rate" in out.output
    assert "100.00%" in out.output
    assert "mean abs difference" in out.output


async def test_a_shadow_that_disagrees_on_a_known_fraction(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    """Labels: a quarter of the mirrored requests get another label."""
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    n = 400
    champion = [result(f"req-{i}", "champion", test_id, output=f"tier-{i % 3}") for i in range(n)]
    shadows = [
        shadow(f"req-{i}", test_id, output=f"tier-{(i + (i % 8 == 0)) % 3}")
        for i in range(n)
        if mirrored(i)
    ]
    await produce_results(settings, champion)
    await produce_shadows(settings, shadows)
    await _catch_up(make_monitor)
    g = build_report(db_path, test_id).agreement
    assert g is not None
    assert (g.compared, g.agreements) == (200, 150)
    assert g.agreement_rate == pytest.approx(0.75)


async def test_regression_agreement_within_a_tolerance_and_mean_abs_difference(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = shadow_test_events(pct=50, model_type="regression")
    await produce_events(settings, events)
    champion, shadows = [], []
    for i in range(100):
        value = 100.0 + i
        champion.append(result(f"req-{i}", "champion", test_id, output={"value": value}))
        # 80: the same up to float noise (relative 1e-9); 20: half a unit off.
        other = value + 0.5 if i % 5 == 0 else value * (1 + 1e-9)
        shadows.append(shadow(f"req-{i}", test_id, output={"value": other}))
    await produce_results(settings, champion)
    await produce_shadows(settings, shadows)
    await _catch_up(make_monitor)
    r = build_report(db_path, test_id)
    g = r.agreement
    assert g is not None
    assert (g.compared, g.agreements, g.numeric_n) == (100, 80, 100)
    assert g.agreement_rate == pytest.approx(0.8)
    assert g.mean_abs_difference == pytest.approx(20 * 0.5 / 100, rel=1e-3)
    assert g.rel_tol == 1e-6


async def test_shadow_errors_are_the_shadows_and_decide_the_verdict(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    n = 2000
    champion = [result(f"req-{i}", "champion", test_id, output=i % 2 == 0) for i in range(n)]
    shadows = []
    for i in range(0, n, 2):
        failed = i % 10 in (0, 4)  # 2 in 5 mirrored requests fail
        shadows.append(
            shadow(
                f"req-{i}",
                test_id,
                output=None if failed else True,
                error="ProviderTimeout" if failed else None,
                latency_ms=3000.0 if failed else 30.0,
            )
        )
    await produce_results(settings, champion)
    await produce_shadows(settings, shadows)
    await _catch_up(make_monitor)
    r = build_report(db_path, test_id, min_requests=100)
    a, b = r.champion, r.challenger
    assert (a.errors, a.error_rate) == (0, 0.0)
    assert (b.requests, b.errors, b.errors_by_code) == (1000, 400, {"ProviderTimeout": 400})
    assert b.error_rate == pytest.approx(0.4)
    assert b.answers == 600  # the errors' 3 s are not the shadow's answers ...
    assert b.latency_ms["p99"] == pytest.approx(30.0, rel=0.2)
    assert b.latency_all_ms["p99"] == pytest.approx(3000.0, rel=0.2)  # ... but were waited
    # The failed copies are paired, not compared.
    g = r.agreement
    assert g is not None
    assert (g.pairs, g.compared, g.agreements) == (1000, 600, 600)
    assert r.error_rate.finding == "worse"
    assert r.error_rate.arm == "shadow"
    assert r.verdict == VERDICT_SHADOW_WORSE
    assert "(shadow) vs" in r.reasons[0]
    # The champion's numbers do not move: a shadow is never anyone's answer.
    assert query(
        db_path,
        "SELECT SUM(requests), SUM(errors) FROM variant_minute WHERE variant = 'champion'",
    ) == [(n, 0)]


async def test_outcomes_score_both_arms_in_any_order(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    """The champion is right 9 times in 10, the shadow 6 in 10 (on the mirrored requests).
    Outcomes come before the results, between the champion's and the shadow's answers, and
    after both; the monitor restarts between the steps."""
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    n = 600

    def truth(i: int) -> bool:
        return i % 3 == 0

    champion = [
        result(f"req-{i}", "champion", test_id, output=truth(i) != ((i // 2) % 10 == 0))
        for i in range(n)
    ]
    shadows = [
        shadow(f"req-{i}", test_id, output=truth(i) != ((i // 2) % 10 < 4))
        for i in range(n)
        if mirrored(i)
    ]
    outcomes = [outcome(f"req-{i}", truth(i)) for i in range(n)]
    # 1: a third of the outcomes, before any result.
    await produce_outcomes(settings, outcomes[0::3])
    await _catch_up(make_monitor)
    # 2: the champion's answers, and another third of the outcomes.
    await produce_results(settings, champion)
    await produce_outcomes(settings, outcomes[1::3])
    await _catch_up(make_monitor)
    # 3: the shadow's answers, then the last third.
    await produce_shadows(settings, shadows)
    await _catch_up(make_monitor)
    await produce_outcomes(settings, outcomes[2::3])
    monitor = await _catch_up(make_monitor)
    assert monitor.stats.outcomes_pending == 0
    assert monitor.stats.shadow_outcomes_joined == n // 2

    r = build_report(db_path, test_id, min_scored=30)
    a, b = r.champion, r.challenger
    assert (a.scored, b.scored) == (n, n // 2)
    assert a.accuracy == pytest.approx(0.9)
    assert b.accuracy == pytest.approx(0.6)
    assert r.quality is not None
    assert r.quality.metric == "accuracy"
    assert r.quality.arm == "shadow"
    assert r.quality.finding == "worse"
    assert r.verdict == VERDICT_SHADOW_WORSE
    g = r.agreement
    assert g is not None
    assert g.compared == n // 2
    # Where the champion is right (9 in 10) and the shadow wrong (4 in 10), they disagree:
    # both right or both wrong agree. Per block of 10 mirrored requests: shadow wrong on
    # 0-3, champion wrong on 0, so they disagree on 1-3: 7 in 10 agree.
    assert g.agreement_rate == pytest.approx(0.7)


async def test_a_shadow_read_before_its_champion_still_pairs(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    at = T0 + timedelta(minutes=1)
    shadows = [shadow(f"req-{i}", test_id, output=i % 4 != 0, at=at) for i in range(0, 200, 2)]
    await produce_shadows(settings, shadows)
    first = await _catch_up(make_monitor)
    assert (first.stats.shadow_results, first.stats.shadow_pairs) == (100, 0)
    g = build_report(db_path, test_id).agreement
    assert g is not None
    assert (g.pairs, g.unpaired, g.agreement_rate) == (0, 100, None)
    # A redelivered shadow result is counted once.
    await produce_shadows(settings, shadows[:10])
    champion = [result(f"req-{i}", "champion", test_id, output=True) for i in range(200)]
    await produce_results(settings, champion)
    second = await _catch_up(make_monitor)
    assert second.stats.shadow_pairs == 100
    assert second.stats.duplicate_shadow_results == 10
    r = build_report(db_path, test_id)
    assert r.challenger.requests == 100
    g = r.agreement
    assert g is not None
    assert (g.pairs, g.compared, g.unpaired) == (100, 100, 0)
    assert g.agreement_rate == pytest.approx(0.5)  # the shadow said False for i % 4 == 0


async def test_an_unreadable_shadow_record_is_dead_lettered_and_the_monitor_goes_on(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    assert any(spec.name == "predictions.shadow.dlq" for spec in TOPICS)  # created with the rest
    events, test_id = shadow_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(
        settings, [result(f"req-{i}", "champion", test_id, output=True) for i in range(4)]
    )
    good = [shadow(f"req-{i}", test_id, output=True) for i in (0, 2)]
    not_a_shadow = result("req-1", "champion", test_id, output=True)
    a_shadow_on_results = shadow("req-3", test_id, output=True)
    await produce(
        settings,
        "predictions.shadow",
        [
            (b"bad-json", b"{not json"),
            (b"req-0", wire(good[0])),
            (b"null", None),
            (b"not-a-shadow", wire(not_a_shadow)),
            (b"req-2", wire(good[1])),
        ],
    )
    await produce(settings, "predictions.results", [(b"shadow-here", wire(a_shadow_on_results))])
    monitor = await _catch_up(make_monitor)
    s = monitor.stats
    assert (s.shadow_results, s.shadow_pairs) == (2, 2)
    assert (s.shadow_dlq, s.results_dlq, s.dlq, s.dlq_failed) == (3, 1, 4, 0)
    dead = await read_topic(settings, "predictions.shadow.dlq")
    assert sorted(r.key for r in dead) == [b"bad-json", b"not-a-shadow", b"null"]
    headers = {r.key: dict(r.headers) for r in dead}
    assert all(
        h["dlq.source.topic"] == settings.topic("predictions.shadow").encode()
        for h in headers.values()
    )
    assert b"variant 'champion'" in headers[b"not-a-shadow"]["dlq.reason"]
    (misplaced,) = await read_topic(settings, "predictions.results.dlq")
    assert b"predictions.shadow" in dict(misplaced.headers)["dlq.reason"]
    assert query(db_path, "SELECT value FROM monitor_counters WHERE name = 'shadow_dlq'") == [(3,)]
    # The positions passed them: a restart neither repeats nor loses anything.
    again = await _catch_up(make_monitor)
    assert (again.stats.shadow_results, again.stats.shadow_dlq) == (2, 3)
    assert len(await read_topic(settings, "predictions.shadow.dlq")) == 3


async def test_a_split_test_report_says_split_and_has_no_agreement(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    from tests.consumers.monitor.streams import ab_test_events

    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(
        settings,
        [
            result(f"req-{i}", ("champion", "challenger")[i % 2], test_id, output=True)
            for i in range(20)
        ],
    )
    await _catch_up(make_monitor)
    r = build_report(db_path, test_id)
    assert (r.mode, r.agreement, r.arm) == ("split", None, "challenger")
    assert r.srm is not None
    data = r.to_dict()
    assert (data["mode"], data["agreement"]) == ("split", None)
    out = CliRunner().invoke(report_cmd, [test_id, "--db", str(db_path)])
    assert "A/B test" in out.output
    assert "agreement" not in out.output


def test_a_schema_2_database_is_migrated_in_place(db_path: Path) -> None:
    MonitorStore(db_path).close()
    with sqlite3.connect(db_path) as db:  # make it a version-2 file, as the last release wrote
        db.execute("DROP TABLE shadow_predictions")
        db.execute("DROP TABLE shadow_agreement")
        db.execute("ALTER TABLE ab_tests DROP COLUMN mode")
        db.execute("ALTER TABLE predictions DROP COLUMN actual")
        db.execute("INSERT INTO monitor_counters VALUES ('results', 7)")
        db.execute("UPDATE monitor_meta SET value = '2' WHERE key = 'schema_version'")
    MonitorStore(db_path).close()
    assert query(db_path, "SELECT value FROM monitor_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)
    ]
    assert query(db_path, "SELECT value FROM monitor_counters WHERE name = 'results'") == [(7,)]
    columns = {row[1] for row in query(db_path, "PRAGMA table_info(ab_tests)")}
    assert "mode" in columns
    assert query(db_path, "SELECT COUNT(*) FROM shadow_agreement") == [(0,)]
