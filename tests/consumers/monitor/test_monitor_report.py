"""The "Done when" of issue 6: stream results with known properties, read the report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from consumers.monitor.report import VERDICT_SRM, VERDICT_WAIT, VERDICT_WORSE, build_report
from consumers.monitor.service import Monitor
from model_registry.cli.monitor import report_cmd
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    T0,
    ab_test_events,
    outcome,
    produce_events,
    produce_outcomes,
    produce_results,
    query,
    result,
)


def scenario(
    test_id: str, n: int = 10_000
) -> tuple[list, dict[str, bool], dict[str, dict[str, int]]]:
    """Challenger on exactly 20% of traffic, 2x the error rate, 80% vs 90% accuracy.

    Returns the results, each request's true label, and the expected positive-class counts.
    """
    results, truth = [], {}
    seen = {"champion": 0, "challenger": 0}
    ok = {"champion": 0, "challenger": 0}
    counts = {v: {"tp": 0, "fp": 0, "fn": 0} for v in seen}
    for i in range(n):
        variant = "challenger" if i % 5 == 0 else "champion"
        j = seen[variant]
        seen[variant] += 1
        rid = f"req-{i}"
        truth[rid] = i % 3 == 0
        at = T0 + timedelta(seconds=i * 0.18)  # 30 minutes of traffic
        latency = (20.0 if variant == "champion" else 35.0) + j % 10
        if j % (20 if variant == "champion" else 10) == 0:  # 5% vs 10% errors
            results.append(
                result(rid, variant, test_id, error="ProviderTimeout", latency_ms=latency, at=at)
            )
            continue
        k = ok[variant]
        ok[variant] += 1
        wrong = k % (10 if variant == "champion" else 5) == 0  # 10% vs 20% wrong
        predicted = truth[rid] != wrong
        c = counts[variant]
        c["tp"] += predicted and truth[rid]
        c["fp"] += predicted and not truth[rid]
        c["fn"] += (not predicted) and truth[rid]
        results.append(
            result(
                rid,
                variant,
                test_id,
                output={"label": predicted, "score": 0.7},
                latency_ms=latency,
                at=at,
            )
        )
    return results, truth, counts


async def test_report_calls_a_worse_challenger_worse(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=20)
    await produce_events(settings, events)
    results, truth, counts = scenario(test_id)
    ids = sorted(truth)
    # Half the outcomes arrive before their results, half after.
    await produce_outcomes(settings, (outcome(rid, truth[rid]) for rid in ids[::2]))
    monitor = make_monitor()
    await monitor.catch_up()
    assert monitor.stats.outcomes_pending == 5000
    await produce_results(settings, results)
    await produce_outcomes(settings, (outcome(rid, truth[rid]) for rid in ids[1::2]))
    await monitor.catch_up()
    assert monitor.stats.results == 10_000
    assert monitor.stats.outcomes_joined == 10_000
    assert monitor.stats.outcomes_pending == 0
    await monitor.close()

    r = build_report(db_path, "lead-scoring-v1")
    assert r.test_id == test_id
    assert r.running
    assert r.model_type == "classification"
    assert (r.champion.requests, r.challenger.requests) == (8000, 2000)
    assert r.observed_challenger_share == pytest.approx(0.2)
    assert r.expected_challenger_share == pytest.approx(0.2)
    assert r.srm is not None
    assert not r.srm.alert
    assert r.srm.p_value == pytest.approx(1.0)
    assert (r.champion.errors, r.challenger.errors) == (400, 200)
    assert r.champion.errors_by_code == {"ProviderTimeout": 400}
    assert (r.champion.error_rate, r.challenger.error_rate) == (0.05, 0.10)
    d = r.error_rate.difference
    assert d is not None
    assert d.estimate == pytest.approx(0.05)
    assert 0.03 < d.low < 0.05 < d.high < 0.07
    # Errored requests have an outcome but nothing to score.
    assert (r.champion.scored, r.challenger.scored) == (7600, 1800)
    assert (r.champion.unscorable, r.challenger.unscorable) == (400, 200)
    assert (r.champion.accuracy, r.challenger.accuracy) == (pytest.approx(0.9), pytest.approx(0.8))
    assert r.quality is not None
    assert r.quality.metric == "accuracy"
    assert r.quality.finding == "worse"
    q = r.quality.difference
    assert q is not None
    assert q.estimate == pytest.approx(-0.1)
    assert q.low < -0.1 < q.high < 0
    for variant, stats in (("champion", r.champion), ("challenger", r.challenger)):
        c = counts[variant]
        assert stats.precision == pytest.approx(c["tp"] / (c["tp"] + c["fp"]))
        assert stats.recall == pytest.approx(c["tp"] / (c["tp"] + c["fn"]))
    # Latency: 20-29 ms vs 35-44 ms; the log buckets are within one bucket (19%).
    assert 20 <= r.champion.latency_ms["p50"] <= 29 * 1.19  # type: ignore[operator]
    assert 35 <= r.challenger.latency_ms["p50"] <= 44 * 1.19  # type: ignore[operator]
    assert r.champion.latency_ms["p99"] <= r.challenger.latency_ms["p50"]  # type: ignore[operator]
    assert r.verdict == VERDICT_WORSE
    assert any(
        reason.startswith("error rate 10.00% (challenger) vs 5.00% (champion): +5.00 pp")
        for reason in r.reasons
    )
    assert any(
        reason.startswith("accuracy 80.00% (challenger) vs 90.00% (champion): -10.00 pp")
        for reason in r.reasons
    )

    # The same comparison as SQL, for analysts.
    (row,) = query(
        db_path,
        "SELECT configured_challenger_pct, observed_challenger_pct, srm_alert, "
        "champion_error_rate, "
        "challenger_error_rate, champion_accuracy, challenger_accuracy, champion_p50_ms, "
        "challenger_p99_ms "
        "FROM ab_comparison WHERE test_id = ?",
        test_id,
    )
    assert row[:7] == (
        20.0,
        pytest.approx(20.0),
        0,
        0.05,
        0.10,
        pytest.approx(0.9),
        pytest.approx(0.8),
    )
    assert row[7] == pytest.approx(r.champion.latency_ms["p50"])
    assert row[8] == pytest.approx(r.challenger.latency_ms["p99"])

    # The CLI: JSON and the table.
    out = CliRunner().invoke(report_cmd, ["lead-scoring-v2", "--json", "--db", str(db_path)])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.output)
    assert data["verdict"] == VERDICT_WORSE
    assert data["test_id"] == test_id
    assert data["error_rate"]["finding"] == "worse"
    assert data["srm"]["alert"] is False
    out = CliRunner().invoke(report_cmd, [test_id, "--db", str(db_path)])
    assert out.exit_code == 0
    assert "challenger worse" in out.output
    assert "SRM check" in out.output


async def test_skewed_split_raises_the_srm_alert(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=20)
    await produce_events(settings, events)
    # 30% observed for 20% configured over 10,000 results.
    skewed = [
        result(
            f"r{i}",
            "challenger" if i % 10 < 3 else "champion",
            test_id,
            output=True,
            at=T0 + timedelta(seconds=i),
        )
        for i in range(10_000)
    ]
    await produce_results(settings, skewed)
    await make_monitor().catch_up()
    r = build_report(db_path, test_id)
    assert r.observed_challenger_share == pytest.approx(0.3)
    assert r.srm is not None
    assert r.srm.alert
    assert r.srm.p_value < 0.001
    assert r.srm.dof == 1
    # chi2 = (7000-8000)^2/8000 + (3000-2000)^2/2000
    assert r.srm.chi2 == pytest.approx(625.0)
    assert r.verdict == VERDICT_SRM
    assert query(db_path, "SELECT srm_alert, chi2 FROM ab_srm")[0] == (1, pytest.approx(625.0))


async def test_small_sample_is_not_enough_data(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(
        settings,
        (result(f"r{i}", ("champion", "challenger")[i % 2], test_id, output=1) for i in range(40)),
    )
    await make_monitor().catch_up()
    r = build_report(db_path, "lead-scoring-v1")
    assert r.verdict == VERDICT_WAIT
    assert any("need 100 each" in reason for reason in r.reasons)
    assert r.srm is not None
    assert not r.srm.alert


async def test_unknown_test_is_a_clear_error(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    await make_monitor().catch_up()
    out = CliRunner().invoke(report_cmd, ["nobody", "--db", str(db_path)])
    assert out.exit_code != 0
    assert "no A/B test with id, champion or challenger 'nobody'" in out.output
    out = CliRunner().invoke(report_cmd, ["x", "--db", str(db_path.parent / "missing.db")])
    assert out.exit_code != 0
    assert "no monitor database" in out.output
