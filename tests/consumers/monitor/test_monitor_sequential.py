"""Issue 15, item 6: always-valid intervals. Properties of the maths, and A/A simulations with
a look after every batch: the sequential interval ever excludes 0 in at most about ``alpha``
of the runs, the fixed-horizon interval under the same peeking far more often."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.monitor.sequential import (
    diff_means_cs,
    diff_proportions_cs,
    mixture_multiplier,
    proportion_cs,
    srm_sequential_p_value,
)
from consumers.monitor.significance import Interval, newcombe_diff, welch_diff

ALPHA = 0.05
Z = NormalDist().inv_cdf(1 - ALPHA / 2)

counts = st.integers(min_value=1, max_value=100_000)
rates = st.floats(min_value=0.0, max_value=1.0)


def _arm(n: int, rate: float) -> tuple[int, int]:
    return round(n * rate), n


@given(counts, rates, counts, rates)
def test_proportion_difference_contains_its_estimate_and_is_symmetric(
    n1: int, p1: float, n2: int, p2: float
) -> None:
    (x1, n1), (x2, n2) = _arm(n1, p1), _arm(n2, p2)
    cs = diff_proportions_cs(x1, n1, x2, n2)
    assert cs is not None
    assert cs.estimate == pytest.approx(x2 / n2 - x1 / n1)
    assert -1.0 <= cs.low <= cs.estimate <= cs.high <= 1.0
    assert cs.low < cs.high  # never claims certainty, even at 0% or 100%
    swapped = diff_proportions_cs(x2, n2, x1, n1)
    assert swapped is not None
    assert (swapped.low, swapped.high) == pytest.approx((-cs.high, -cs.low))
    if cs.low > -1.0 and cs.high < 1.0:  # not clipped: symmetric about the estimate
        assert cs.high - cs.estimate == pytest.approx(cs.estimate - cs.low)


@given(counts, rates, counts, rates, st.integers(min_value=2, max_value=50))
def test_proportion_difference_shrinks_with_n(
    n1: int, p1: float, n2: int, p2: float, k: int
) -> None:
    (x1, n1), (x2, n2) = _arm(n1, p1), _arm(n2, p2)
    small = diff_proportions_cs(x1, n1, x2, n2)
    large = diff_proportions_cs(x1 * k, n1 * k, x2 * k, n2 * k)
    assert small is not None
    assert large is not None
    assert large.high - large.low < small.high - small.low or small.high - small.low == 2.0


@given(
    st.integers(min_value=2, max_value=100_000),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=1e-6, max_value=1e6),
    st.integers(min_value=2, max_value=100_000),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=1e-6, max_value=1e6),
    st.integers(min_value=2, max_value=50),
)
def test_mean_difference_contains_its_estimate_is_symmetric_and_shrinks(
    n1: int, m1: float, v1: float, n2: int, m2: float, v2: float, k: int
) -> None:
    cs = diff_means_cs(n1, m1, v1, n2, m2, v2)
    assert cs is not None
    assert cs.low < cs.estimate < cs.high
    assert cs.high - cs.estimate == pytest.approx(cs.estimate - cs.low)
    swapped = diff_means_cs(n2, m2, v2, n1, m1, v1)
    assert swapped is not None
    assert (swapped.low, swapped.high) == pytest.approx((-cs.high, -cs.low))
    larger = diff_means_cs(n1 * k, m1, v1, n2 * k, m2, v2)
    assert larger is not None
    assert larger.high - larger.low < cs.high - cs.low
    # Wider than the fixed-horizon interval, the price of looking at any time (on samples the
    # report judges at all: below ~30, Student's t is wider than any normal approximation).
    if min(n1, n2) >= 30:
        fixed = welch_diff(n1, m1, v1, n2, m2, v2)
        assert fixed is not None
        assert cs.high - cs.low > fixed.high - fixed.low


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_the_multiplier_is_wider_than_fixed_and_shrinks_the_interval(n: int, m: int) -> None:
    lo, hi = sorted((n, m))
    assert mixture_multiplier(lo) > Z
    # The half-width in standard errors of one observation: multiplier / sqrt(n) falls with n.
    if lo < hi:
        assert mixture_multiplier(hi) / math.sqrt(hi) < mixture_multiplier(lo) / math.sqrt(lo)


@given(st.integers(min_value=1, max_value=5000), rates, st.integers(min_value=2, max_value=20))
def test_a_rate_sequence_contains_its_estimate_and_shrinks(n: int, p: float, k: int) -> None:
    x = round(n * p)
    cs = proportion_cs(x, n)
    assert cs is not None
    assert 0.0 <= cs.low <= x / n <= cs.high <= 1.0
    larger = proportion_cs(x * k, n * k)
    assert larger is not None
    assert larger.high - larger.low < cs.high - cs.low
    mirrored = proportion_cs(n - x, n)
    assert mirrored is not None
    assert (mirrored.low, mirrored.high) == pytest.approx((1 - cs.high, 1 - cs.low), abs=1e-9)


def test_the_edges_are_what_they_say() -> None:
    assert diff_proportions_cs(0, 0, 1, 1) is None
    assert diff_means_cs(1, 0.0, 1.0, 5, 0.0, 1.0) is None
    assert proportion_cs(0, 0) is None
    with pytest.raises(ValueError, match="alpha"):
        mixture_multiplier(10, alpha=0.7)
    # A challenger failing every request: the difference is certain enough at 100 each.
    cs = diff_proportions_cs(0, 100, 100, 100)
    assert cs is not None
    assert cs.low > 0.8
    assert srm_sequential_p_value([(500, 500)], [(0.5, 0.5)]) == 1.0
    p = srm_sequential_p_value([(7000, 3000)], [(0.8, 0.2)])
    assert p is not None
    assert p < 1e-50
    assert srm_sequential_p_value([(10, 1)], [(1.0, 0.0)]) == 0.0
    assert srm_sequential_p_value([(0, 0)], [(0.5, 0.5)]) is None


# ---------------------------------------------------------------- A/A simulations

RUNS = 400
BATCH = 50  # per arm, between looks
LOOKS = 40  # up to 2,000 per arm
MIN_PER_ARM = 100  # the report's --min-requests: no verdict before
# How far above alpha an estimate from RUNS runs may land by chance (3 binomial sd).
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _aa_proportions(rate: float, seed: int) -> tuple[float, float]:
    """Fraction of A/A runs in which the sequential / the fixed-horizon interval of the
    difference excludes 0 at *some* look."""
    rng = random.Random(seed)
    seq_hits = fixed_hits = 0
    for _ in range(RUNS):
        x1 = x2 = n = 0
        seq_seen = fixed_seen = False
        for _ in range(LOOKS):
            x1 += sum(rng.random() < rate for _ in range(BATCH))
            x2 += sum(rng.random() < rate for _ in range(BATCH))
            n += BATCH
            if n < MIN_PER_ARM:
                continue
            seq = diff_proportions_cs(x1, n, x2, n, ALPHA)
            fixed = newcombe_diff(x1, n, x2, n, Z)
            assert seq is not None
            assert fixed is not None
            seq_seen = seq_seen or seq.excludes_zero
            fixed_seen = fixed_seen or fixed.excludes_zero
        seq_hits += seq_seen
        fixed_hits += fixed_seen
    return seq_hits / RUNS, fixed_hits / RUNS


@pytest.mark.parametrize(("rate", "seed"), [(0.1, 15), (0.5, 6)])
def test_peeking_at_the_sequential_interval_keeps_its_error_rate(rate: float, seed: int) -> None:
    seq, fixed = _aa_proportions(rate, seed)
    assert seq <= ALPHA + TOLERANCE
    # The same peeking at the fixed-horizon interval: a false "significant" far more often.
    assert fixed > ALPHA + TOLERANCE
    assert fixed > 2 * seq


def _normal_diff(n1: float, m1: float, v1: float, n2: float, m2: float, v2: float) -> Interval:
    half = Z * math.sqrt(v1 / n1 + v2 / n2)
    return Interval(m2 - m1, m2 - m1 - half, m2 - m1 + half)


def test_peeking_at_the_sequential_mean_difference_keeps_its_error_rate() -> None:
    rng = random.Random(2026)
    seq_hits = fixed_hits = 0
    runs, looks, batch = 300, 30, 40
    for _ in range(runs):
        sums = [[0, 0.0, 0.0], [0, 0.0, 0.0]]  # n, sum, sum of squares per arm
        seq_seen = fixed_seen = False
        for _ in range(looks):
            for arm in sums:
                for _ in range(batch):
                    v = rng.expovariate(1 / 50.0)  # skewed, like latency
                    arm[0] += 1
                    arm[1] += v
                    arm[2] += v * v
            (n1, s1, q1), (n2, s2, q2) = sums
            m1, m2 = s1 / n1, s2 / n2
            stats = (n1, m1, (q1 - n1 * m1 * m1) / (n1 - 1), n2, m2, (q2 - n2 * m2 * m2) / (n2 - 1))
            seq = diff_means_cs(*stats, ALPHA)
            # Fixed horizon: the normal interval (Welch's t at these df is within 2% of it,
            # and its t quantile is too slow to compute 9,000 times here).
            fixed = _normal_diff(*stats)
            assert seq is not None
            assert fixed is not None
            seq_seen = seq_seen or seq.excludes_zero
            fixed_seen = fixed_seen or fixed.excludes_zero
        seq_hits += seq_seen
        fixed_hits += fixed_seen
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert seq_hits / runs <= ALPHA + tolerance
    assert fixed_hits / runs > ALPHA + tolerance


def test_the_exact_rate_sequence_covers_the_true_rate_at_every_look() -> None:
    rng = random.Random(7)
    rate, runs, misses = 0.05, 300, 0
    for _ in range(runs):
        x = n = 0
        for _ in range(40):
            x += sum(rng.random() < rate for _ in range(50))
            n += 50
            cs = proportion_cs(x, n, ALPHA)
            assert cs is not None
            if not cs.low <= rate <= cs.high:
                misses += 1
                break
    assert misses / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
