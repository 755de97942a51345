"""The guardrail evaluator, both ways, on reports built from a real monitor database (results
and outcomes applied through ``MonitorStore``, the store the monitor writes with)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from consumers.monitor.aggregate import OutcomeRow, ResultRow
from consumers.monitor.guardrails import Thresholds, Verdict, evaluate
from consumers.monitor.report import ComparisonReport, build_report
from consumers.monitor.store import ABTestRow, Batch, ModelRow, MonitorStore, SplitRow
from registry.core.predictions import PredictionOutcome
from tests.consumers.monitor.streams import CHALLENGER, CHAMPION, T0, result

TEST_ID = f"ab:{CHALLENGER}:2"


def report(
    db_path: Path,
    n: int,
    *,
    challenger_wrong_every: int = 10,
    challenger_fails_every: int = 0,
    challenger_latency: float = 20.0,
    challenger_share: float = 0.5,
) -> ComparisonReport:
    """``n`` requests at a 50/50 split (``challenger_share`` of them actually to the
    challenger); the champion is wrong 1 in 10 and never fails."""
    results, outcomes = [], []
    every = round(1 / challenger_share)
    seen = {"champion": 0, "challenger": 0}
    for i in range(n):
        variant = "challenger" if i % every == 0 else "champion"
        j = seen[variant]  # the request's index within its arm
        seen[variant] += 1
        truth = i % 3 == 0
        wrong_every = challenger_wrong_every if variant == "challenger" else 10
        predicted = truth != (j % wrong_every == 0)
        kw = {"output": predicted, "latency_ms": 20.0, "at": T0 + timedelta(seconds=i)}
        if variant == "challenger":
            kw["latency_ms"] = challenger_latency
            if challenger_fails_every and j % challenger_fails_every == 0:
                kw.update(
                    challenger=CHAMPION, fallback="champion", fallback_reason="PROVIDER_ERROR: 500"
                )
        results.append(ResultRow.of(result(f"r{i}", variant, TEST_ID, **kw)))  # type: ignore[arg-type]
        outcomes.append(OutcomeRow.of(PredictionOutcome(request_id=f"r{i}", actual=truth)))
    store = MonitorStore(db_path)
    try:
        store.apply(
            Batch(
                results=results,
                outcomes=outcomes,
                tests={
                    TEST_ID: ABTestRow(
                        TEST_ID, CHAMPION, CHALLENGER, 50.0, 1, "sticky", T0.isoformat()
                    )
                },
                splits={(TEST_ID, 1): SplitRow(TEST_ID, 1, 50.0, T0.isoformat())},
                models={
                    m: ModelRow(m, "classification", "1.0.0", "active")
                    for m in (CHAMPION, CHALLENGER)
                },
            ),
            {CHAMPION: "classification", CHALLENGER: "classification"},
            time.time(),
        )
    finally:
        store.close()
    return build_report(db_path, TEST_ID)


ALL = Thresholds(
    max_error_rate=0.05,
    max_latency_p99_ms=250,
    min_quality_delta=0.02,
    min_samples=200,
    promote_when_better=True,
)


def test_a_healthy_challenger_trips_nothing(db_path: Path) -> None:
    v = evaluate(report(db_path, 4000), ALL)
    assert v == Verdict(None, None, "no guardrail crossed", v.figures)
    assert v.figures["challenger_requests"] == 2000
    assert not v.tripped


def test_a_broken_challenger_is_taken_off_traffic(db_path: Path) -> None:
    # Falls back to the champion on every other request: 50% errors.
    r = report(db_path, 400, challenger_fails_every=2)
    v = evaluate(r, ALL)
    assert (v.action, v.guardrail) == ("zero_traffic", "max_error_rate")
    assert v.tripped
    assert v.figures["error_rate"] == pytest.approx(0.5)
    assert isinstance(v.figures["low"], float)
    assert v.figures["low"] > 0.05
    assert "above the limit 5.00%" in v.reason
    # At a limit its error rate is not confidently above, nothing trips.
    assert evaluate(r, Thresholds(max_error_rate=0.45)).action is None


def test_a_few_failures_do_not_trip_a_generous_limit(db_path: Path) -> None:
    # 1 in 50 fails: 2%, against a 5% limit.
    v = evaluate(report(db_path, 4000, challenger_fails_every=50), ALL)
    assert v.guardrail != "max_error_rate"


def test_a_slow_challenger_trips_the_latency_guardrail(db_path: Path) -> None:
    v = evaluate(report(db_path, 400, challenger_latency=400.0), ALL)
    assert (v.action, v.guardrail) == ("zero_traffic", "max_latency_p99_ms")
    assert v.figures["slower"] == 200
    # Not before the minimum sample.
    v = evaluate(
        report(db_path.with_name("b.db"), 100, challenger_latency=400.0),
        Thresholds(max_latency_p99_ms=250, min_samples=200),
    )
    assert v.action is None


def test_a_worse_challenger_trips_the_quality_guardrail(db_path: Path) -> None:
    # Wrong 1 in 3 against the champion's 1 in 10.
    v = evaluate(report(db_path, 4000, challenger_wrong_every=3), ALL)
    assert (v.action, v.guardrail) == ("zero_traffic", "min_quality_delta")
    assert v.figures["metric"] == "accuracy"
    high = v.figures["high"]
    assert isinstance(high, float)
    assert high < -0.02
    # A delta larger than the difference is not crossed.
    r = build_report(db_path, TEST_ID)
    assert evaluate(r, Thresholds(min_quality_delta=0.5)).action is None


def test_a_clearly_better_challenger_is_promoted_but_not_before_min_samples(
    db_path: Path,
) -> None:
    # Never wrong, against the champion's 1 in 10.
    r = report(db_path, 4000, challenger_wrong_every=10**9)
    v = evaluate(r, ALL)
    assert (v.action, v.guardrail) == ("promote", "promote_when_better")
    assert v.figures["low"] > 0  # type: ignore[operator]
    assert not v.tripped
    # Without the flag, or with a larger min_samples, no promotion.
    assert evaluate(r, Thresholds(promote_when_better=False)).action is None
    assert evaluate(r, Thresholds(promote_when_better=True, min_samples=5000)).action is None
    small = report(db_path.with_name("small.db"), 300, challenger_wrong_every=10**9)
    assert evaluate(small, Thresholds(promote_when_better=True, min_samples=200)).action is None


def test_a_skewed_split_stops_the_test(db_path: Path) -> None:
    # A third of the traffic to the challenger when half is configured.
    r = report(db_path, 3000, challenger_share=1 / 3)
    v = evaluate(r, ALL)
    assert (v.action, v.guardrail) == ("stop", "srm")
    assert v.figures["p_value"] < 0.001  # type: ignore[operator]
    assert evaluate(r, Thresholds(srm=None)).guardrail != "srm"


def test_thresholds_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Thresholds(max_error_rate=5)
    with pytest.raises(ValueError, match="min_samples"):
        Thresholds(min_samples=0)
