"""The statistics, latency buckets and scoring, checked against SciPy and known answers."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.monitor.latency import BASE_MS, N_BUCKETS, bucket_bounds, bucket_of, percentile
from consumers.monitor.scoring import kind_of, predicted_value, score
from consumers.monitor.significance import (
    chi2_sf,
    newcombe_diff,
    srm_test,
    t_quantile,
    welch_diff,
    wilson,
)

scipy_stats = pytest.importorskip("scipy.stats")


@given(st.floats(min_value=0.0, max_value=400.0), st.integers(min_value=1, max_value=40))
def test_chi2_sf_matches_scipy(x: float, dof: int) -> None:
    assert chi2_sf(x, dof) == pytest.approx(float(scipy_stats.chi2.sf(x, dof)), rel=1e-7, abs=1e-12)


@given(st.floats(min_value=0.5, max_value=0.9995), st.floats(min_value=1, max_value=1e6))
def test_t_quantile_matches_scipy(p: float, df: float) -> None:
    assert t_quantile(p, df) == pytest.approx(float(scipy_stats.t.ppf(p, df)), rel=1e-7, abs=1e-9)


def test_wilson_and_newcombe_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80.
    lo, hi = wilson(56, 70)
    assert (round(lo, 4), round(hi, 4)) == (0.6918, 0.8770)
    d = newcombe_diff(48, 80, 56, 70)  # second minus first
    assert d is not None
    assert (round(d.estimate, 4), round(d.low, 4), round(d.high, 4)) == (0.2, 0.0524, 0.3339)
    assert newcombe_diff(0, 0, 1, 10) is None


@settings(max_examples=50)
@given(
    st.integers(min_value=2, max_value=500),
    st.floats(min_value=-100, max_value=100),
    st.floats(min_value=0.01, max_value=50),
    st.integers(min_value=2, max_value=500),
    st.floats(min_value=-100, max_value=100),
    st.floats(min_value=0.01, max_value=50),
)
def test_welch_matches_scipy(n1: int, m1: float, v1: float, n2: int, m2: float, v2: float) -> None:
    got = welch_diff(n1, m1, v1, n2, m2, v2)
    assert got is not None
    se = math.sqrt(v1 / n1 + v2 / n2)
    df = (v1 / n1 + v2 / n2) ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    half = float(scipy_stats.t.ppf(0.975, df)) * se
    assert got.high - got.estimate == pytest.approx(half, rel=1e-7)
    assert got.estimate == pytest.approx(m2 - m1)


def test_srm() -> None:
    fine = srm_test([(8000, 2000)], [(0.8, 0.2)])
    assert fine is not None
    assert fine.chi2 == 0
    assert fine.p_value == 1
    assert not fine.alert
    skew = srm_test([(7000, 3000)], [(0.8, 0.2)])
    assert skew is not None
    assert skew.alert
    assert skew.chi2 == pytest.approx(625)
    # A small, plausible deviation is no alert: 2060 of 10,000 for 20% (z ~ 1.5).
    assert not srm_test([(7940, 2060)], [(0.8, 0.2)]).alert  # type: ignore[union-attr]
    # Two splits add their degrees of freedom.
    two = srm_test([(800, 200), (500, 500)], [(0.8, 0.2), (0.5, 0.5)])
    assert two is not None
    assert two.dof == 2
    assert not two.alert
    # Traffic to an arm configured at 0% is a mismatch whatever the numbers.
    zero = srm_test([(100, 1)], [(1.0, 0.0)])
    assert zero is not None
    assert zero.alert
    assert srm_test([(2, 1)], [(0.5, 0.5)]) is None  # too few to test
    assert skew.p_value == pytest.approx(
        float(scipy_stats.chisquare([7000, 3000], [8000, 2000]).pvalue), rel=1e-9
    )


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_every_latency_lies_in_its_bucket(ms: float) -> None:
    b = bucket_of(ms)
    lo, hi = bucket_bounds(b)
    assert 0 <= b < N_BUCKETS
    if b < N_BUCKETS - 1:
        assert lo * (1 - 1e-12) <= ms < hi * (1 + 1e-12)
    else:
        assert ms >= lo * (1 - 1e-12)


@given(
    st.lists(st.floats(min_value=0.0, max_value=1e5, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_percentile_is_within_the_bucket_of_the_true_order_statistic(
    values: list[float], q: float
) -> None:
    counts: dict[int, int] = {}
    for v in values:
        counts[bucket_of(v)] = counts.get(bucket_of(v), 0) + 1
    got = percentile(counts, q)
    true = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    lo, hi = bucket_bounds(bucket_of(true))
    assert got is not None
    assert lo * (1 - 1e-9) <= got <= hi * (1 + 1e-9)


def test_percentile_relative_error_on_a_realistic_sample() -> None:
    values = [1 + (i * 7919 % 1000) / 10 for i in range(10_000)]  # 1-101 ms, spread out
    counts: dict[int, int] = {}
    for v in values:
        counts[bucket_of(v)] = counts.get(bucket_of(v), 0) + 1
    for q in (0.5, 0.95, 0.99):
        exact = statistics.quantiles(values, n=100)[round(q * 100) - 1]
        assert percentile(counts, q) == pytest.approx(exact, rel=0.1)
    assert percentile({}, 0.5) is None
    assert bucket_of(-1) == 0
    assert bucket_of(float("nan")) == 0
    assert bucket_of(BASE_MS) == 1


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (True, True),
        (0.7, 0.7),
        ("churn", "churn"),
        ({"label": "yes", "score": 0.9}, "yes"),
        ({"prediction": [{"value": 3.5}]}, 3.5),
        ([1], 1),
        ({"scores": [0.1, 0.9]}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_predicted_value(output: object, expected: object) -> None:
    assert predicted_value(output) == expected


def test_scoring() -> None:
    assert kind_of("regression", True) == "regression"
    assert kind_of("forecasting", 1) == "regression"
    assert kind_of("nlp", 1.5) == "classification"
    assert kind_of(None, "x") == "classification"
    assert kind_of(None, 2.5) == "regression"
    assert kind_of(None, True) == "classification"
    s = score("classification", 1, True)
    assert s is not None
    assert s.correct
    assert s.actual_label == "true"
    s = score("classification", "no", True)
    assert s is not None
    assert not s.correct
    assert s.predicted_label == "false"
    s = score("classification", 2.0, 2)
    assert s is not None
    assert s.correct
    assert s.actual_label == "2"
    s = score("regression", 10.5, 12)
    assert s is not None
    assert s.error == -1.5
    assert score("regression", "abc", 1.0) is None
    assert score("classification", None, True) is None
