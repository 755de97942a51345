"""Issue 15, item 1: the report does not credit a failing or slow challenger with the champion's
work. Results go through the real path: Kafka (embedded broker), the monitor, a SQLite file."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from consumers.monitor.aggregate import ResultRow
from consumers.monitor.guardrails import Thresholds, evaluate
from consumers.monitor.report import VERDICT_WAIT, VERDICT_WORSE, build_report
from consumers.monitor.service import Monitor
from consumers.monitor.store import Batch, MonitorStore
from consumers.monitor.totals import Totals
from model_registry.cli.monitor import report_cmd
from registry.core.predictions import PredictionResult
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    CHAMPION,
    T0,
    ab_test_events,
    outcome,
    produce_events,
    produce_outcomes,
    produce_results,
    query,
    result,
)

N = 600  # requests, half to each arm


def _truth(i: int) -> bool:
    return i % 3 == 0


def _champion_answer(i: int) -> bool:
    """The champion is right 9 times in 10 (on either arm's requests)."""
    return _truth(i) != ((i // 2) % 10 == 0)


async def _run(
    settings: Settings,
    make_monitor: Callable[..., Monitor],
    results: list[PredictionResult],
) -> None:
    await produce_results(settings, results)
    await produce_outcomes(
        settings, (outcome(r.request_id, _truth(int(r.request_id[4:]))) for r in results)
    )
    monitor = make_monitor()
    await monitor.catch_up()
    assert monitor.stats.results == len(results)
    assert monitor.stats.outcomes_joined == len(results)
    await monitor.close()


async def test_a_challenger_that_always_falls_back_is_reported_failing(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    results = []
    for i in range(N):
        at = T0 + timedelta(seconds=i)
        if i % 2 == 0:
            results.append(
                result(
                    f"req-{i}",
                    "champion",
                    test_id,
                    output=_champion_answer(i),
                    latency_ms=20.0,
                    at=at,
                )
            )
        else:
            # The challenger timed out (2 ms to fail), the champion answered (20 ms): the caller
            # got the champion's (mostly right) answer under the challenger's tag.
            results.append(
                result(
                    f"req-{i}",
                    "challenger",
                    test_id,
                    output=_champion_answer(i),
                    latency_ms=22.0,
                    at=at,
                    challenger=CHAMPION,  # served by the champion
                    fallback="champion",
                    fallback_reason="PROVIDER_TIMEOUT: provider of 'lead-scoring-v2' timed out",
                )
            )
    await _run(settings, make_monitor, results)

    r = build_report(db_path, test_id)
    a, b = r.champion, r.challenger
    assert (a.requests, b.requests) == (300, 300)
    # Every challenger request is an error, coded by its reason, and a fallback.
    assert (b.errors, b.error_rate, b.fallbacks) == (300, 1.0, 300)
    assert b.errors_by_code == {"PROVIDER_TIMEOUT": 300}
    assert (a.errors, a.error_rate) == (0, 0.0)
    # The champion's answers under the challenger's tag are scored for nobody.
    assert (b.scored, b.correct, b.accuracy) == (0, 0, None)
    assert b.fallback_outcomes == 300
    assert (a.scored, a.fallback_outcomes) == (300, 0)
    assert a.accuracy == pytest.approx(0.9)
    # No answer of its own: no latency of its own (it cannot look fast); end to end it is
    # what the challenger's callers waited.
    assert b.answers == 0
    assert b.mean_latency_ms is None
    assert b.latency_ms == {"p50": None, "p95": None, "p99": None}
    assert b.latency_all_ms["p50"] == pytest.approx(22.0, rel=0.2)
    assert r.latency is None
    # The verdict: worse, on the sequential interval.
    assert r.verdict == VERDICT_WORSE
    assert r.error_rate.finding == "worse"
    seq = r.error_rate.sequential
    assert seq is not None
    assert seq.low > 0.9
    assert any("300 challenger requests were answered by the champion" in x for x in r.reasons)
    assert r.quality is not None
    assert r.quality.finding is None
    # The guardrail trips; a healthy threshold on the champion's side would not.
    v = evaluate(r, Thresholds(max_error_rate=0.05))
    assert (v.action, v.guardrail) == ("zero_traffic", "max_error_rate")
    assert v.figures["fallbacks"] == 300
    # As SQL and on the command line.
    (row,) = query(
        db_path,
        "SELECT errors, fallbacks, scored, fallback_outcomes, accuracy FROM ab_variant_summary "
        "WHERE test_id = ? AND variant = 'challenger'",
        test_id,
    )
    assert row == (300, 300, 0, 300, None)
    out = CliRunner().invoke(report_cmd, [test_id, "--json", "--db", str(db_path)])
    data = orjson.loads(out.output)
    assert data["verdict"] == VERDICT_WORSE
    assert data["error_rate"]["sequential"]["low"] > 0.9
    assert data["error_rate"]["fixed_horizon"]["low"] > 0.9
    assert data["challenger"]["fallback_outcomes"] == 300
    out = CliRunner().invoke(report_cmd, [test_id, "--db", str(db_path)])
    assert out.exit_code == 0, out.output
    assert "sequential 95% CS" in out.output
    assert "fixed-horizon 95% CI" in out.output


async def test_a_slow_challenger_shows_in_the_latency_percentiles(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    results = []
    for i in range(N):
        variant = ("champion", "challenger")[i % 2]
        base = 20.0 if variant == "champion" else 80.0
        results.append(
            result(
                f"req-{i}",
                variant,
                test_id,
                output=_champion_answer(i),
                latency_ms=base + (i // 2) % 10,
                at=T0 + timedelta(seconds=i),
            )
        )
    await _run(settings, make_monitor, results)

    r = build_report(db_path, test_id)
    a, b = r.champion, r.challenger
    assert (a.errors, b.errors, b.fallbacks) == (0, 0, 0)
    assert (a.answers, b.answers) == (300, 300)
    assert 20 <= a.latency_ms["p50"] <= 29 * 1.19  # type: ignore[operator]
    assert 80 <= b.latency_ms["p50"] <= 89 * 1.19  # type: ignore[operator]
    assert a.latency_ms["p99"] < b.latency_ms["p50"]  # type: ignore[operator]
    assert b.mean_latency_ms == pytest.approx(84.5)
    assert b.latency_all_ms == b.latency_ms  # no errors: every request is an answer
    # The latency comparison shows it (informational; the verdict is about errors and quality).
    assert r.latency is not None
    assert r.latency.finding == "worse"
    assert r.latency.sequential is not None
    assert r.latency.sequential.low > 50
    assert r.verdict == VERDICT_WAIT  # same accuracy, no errors
    # A p99 guardrail below the challenger's latency trips; one above it does not.
    assert evaluate(r, Thresholds(max_latency_p99_ms=50)).guardrail == "max_latency_p99_ms"
    assert evaluate(r, Thresholds(max_latency_p99_ms=200)).action is None
    (row,) = query(
        db_path,
        "SELECT challenger_p50_ms, champion_p99_ms FROM ab_comparison WHERE test_id = ?",
        test_id,
    )
    assert row == (pytest.approx(b.latency_ms["p50"]), pytest.approx(a.latency_ms["p99"]))


def test_a_shadow_variant_keeps_sums_of_its_own(db_path: Path) -> None:
    """A mirrored copy of champion traffic (``variant: shadow``) neither crashes the store nor
    mixes into the champion or the challenger."""
    test_id = "ab:lead-scoring-v2:2"

    def row(i: int, variant: str, latency: float) -> ResultRow:
        r = result(f"r{i}", "champion", test_id, output=True, latency_ms=latency, at=T0)
        # The result model does not accept "shadow" yet: build it as it will arrive.
        return ResultRow.of(PredictionResult.model_construct(**{**dict(r), "variant": variant}))

    store = MonitorStore(db_path)
    try:
        batch = Batch(
            results=[row(i, "champion", 10.0) for i in range(5)]
            + [row(i, "shadow", 500.0) for i in range(5, 8)]
        )
        applied = store.apply(batch, {}, time.time())
        totals = Totals()
        totals.merge(applied.delta)
        totals.merge(store.load_totals())
    finally:
        store.close()
    rows = dict(
        (v, (n, lat))
        for v, n, lat in query(
            db_path,
            "SELECT variant, SUM(requests), SUM(answer_latency_sum_ms) FROM variant_minute "
            "GROUP BY variant",
        )
    )
    assert rows == {"champion": (5, 50.0), "shadow": (3, 1500.0)}
    assert totals.traffic[(CHAMPION, "shadow", test_id)][0] == 6  # merged twice: 3 + 3
    assert totals.traffic[(CHAMPION, "champion", test_id)][0] == 10
    assert query(db_path, "SELECT variant FROM ab_variant_summary") == [("champion",)]
