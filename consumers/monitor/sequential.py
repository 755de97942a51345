"""Always-valid (sequential) inference for a report that is watched while the test runs.

A fixed-horizon 95% interval is right 95% of the time when it is looked at *once*, at a sample
size chosen in advance. Looked at after every batch, and acted on the first time it excludes
zero, it excludes zero in an A/A test far more often than 5% of the time (the simulation in
``tests/consumers/monitor/test_monitor_sequential.py`` shows it). A *confidence sequence*
holds at every sample size at once: the chance that it *ever* misses the true value, however
often it is looked at, is at most ``alpha``.

Two constructions, pure Python:

- ``diff_proportions_cs`` / ``diff_means_cs``: the normal-mixture (Robbins) boundary of Howard
  et al. (2021), applied to the difference of two arms' estimates as in the asymptotic
  confidence sequences of Waudby-Smith et al. (2021, "Time-uniform central limit theory"); the
  two-sided mixture SPRT of Johari et al. ("Always valid inference") inverted. With ``se`` the
  standard error of the difference and ``N`` the observations of both arms, the half-width is
  ``se * sqrt((1 + 1/r) * (log(1 + r) + 2 log(1/alpha)))`` with ``r = N * c / tune_n`` and
  ``c = -2 log(alpha) + log(1 - 2 log(alpha))``: the mixture is tuned to be tightest near
  ``tune_n`` observations; it is valid at every ``N`` whatever ``tune_n`` is. Its guarantee is
  asymptotic (the variance is estimated), so the report asks for a minimum sample first.
- ``proportion_cs`` and ``srm_sequential_p_value``: the beta-binomial mixture martingale, exact
  for any sample size (Ville's inequality), for one arm's rate (a guardrail) and for the
  sample ratio (Lindon & Malek's sequential SRM test, one factor per split version).
"""

from __future__ import annotations

import math

from consumers.monitor.significance import Interval

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TUNE_N",
    "diff_means_cs",
    "diff_proportions_cs",
    "mixture_multiplier",
    "proportion_cs",
    "srm_sequential_p_value",
]

DEFAULT_ALPHA = 0.05
DEFAULT_TUNE_N = 5000
"""Observations (both arms together) at which the mixture is tuned to be tightest."""
_SRM_CONCENTRATION = 100.0


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError("alpha must be in (0, 0.5)")


def mixture_multiplier(
    n: float, alpha: float = DEFAULT_ALPHA, tune_n: float = DEFAULT_TUNE_N
) -> float:
    """Half-width of the normal-mixture confidence sequence in standard errors, after ``n``
    observations (the fixed-horizon analogue is 1.96 at alpha 0.05). Decreasing in ``n`` to
    about 1.5x the fixed-horizon value at ``tune_n``, then growing like ``sqrt(log n)``."""
    _check_alpha(alpha)
    if n <= 0 or tune_n <= 0:
        raise ValueError("n and tune_n must be positive")
    c = -2.0 * math.log(alpha) + math.log(1.0 - 2.0 * math.log(alpha))
    r = n * c / tune_n
    return math.sqrt((1.0 + 1.0 / r) * (math.log1p(r) + 2.0 * math.log(1.0 / alpha)))


def _interval(d: float, half: float, bound: float | None = None) -> Interval:
    low, high = d - half, d + half
    if bound is not None:
        low, high = max(-bound, low), min(bound, high)
    return Interval(d, low, high)


def diff_proportions_cs(
    x1: float,
    n1: float,
    x2: float,
    n2: float,
    alpha: float = DEFAULT_ALPHA,
    tune_n: float = DEFAULT_TUNE_N,
) -> Interval | None:
    """Confidence sequence for ``x2/n2 - x1/n1`` (arm 2 minus arm 1); None if an arm is empty.

    The variance uses each rate with one success and one failure added (Agresti-Caffo), so
    an arm at 0% or 100% does not claim zero variance; the interval is clipped to [-1, 1].
    """
    if n1 <= 0 or n2 <= 0:
        return None
    q1, q2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    se = math.sqrt(q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2)
    d = x2 / n2 - x1 / n1
    return _interval(d, se * mixture_multiplier(n1 + n2, alpha, tune_n), 1.0)


def diff_means_cs(
    n1: float,
    mean1: float,
    var1: float,
    n2: float,
    mean2: float,
    var2: float,
    alpha: float = DEFAULT_ALPHA,
    tune_n: float = DEFAULT_TUNE_N,
) -> Interval | None:
    """Confidence sequence for ``mean2 - mean1`` (sample variances ``var1``, ``var2``); None
    unless both arms have n >= 2."""
    if n1 < 2 or n2 < 2:
        return None
    se = math.sqrt(max(var1, 0.0) / n1 + max(var2, 0.0) / n2)
    return _interval(mean2 - mean1, se * mixture_multiplier(n1 + n2, alpha, tune_n))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_mixture(x: float, n: float, p: float, a: float, b: float) -> float:
    """log of the beta-binomial mixture likelihood ratio against rate ``p`` (0 < p < 1)."""
    return (
        _log_beta(a + x, b + n - x) - _log_beta(a, b) - x * math.log(p) - (n - x) * math.log1p(-p)
    )


def proportion_cs(
    x: float, n: float, alpha: float = DEFAULT_ALPHA, prior: tuple[float, float] = (0.5, 0.5)
) -> Interval | None:
    """Exact confidence sequence for a rate after ``x`` successes in ``n`` trials: the rates
    ``p`` whose beta-binomial mixture martingale (``prior`` Beta(a, b)) is below ``1/alpha``.
    Valid at every ``n`` at once, with no large-sample approximation. None if ``n`` is 0."""
    _check_alpha(alpha)
    if n <= 0:
        return None
    if not 0 <= x <= n:
        raise ValueError("need 0 <= x <= n")
    a, b = prior
    limit = math.log(1.0 / alpha)
    p_hat = x / n
    eps = 1e-15

    def outside(p: float) -> bool:
        return _log_mixture(x, n, p, a, b) >= limit

    def edge(inside: float, out: float) -> float:
        # The log mixture is convex in p with its minimum at p_hat: one crossing each side.
        for _ in range(60):  # to ~1e-18: below any count's resolution
            mid = (inside + out) / 2.0
            if outside(mid):
                out = mid
            else:
                inside = mid
        return inside

    start = min(max(p_hat, eps), 1 - eps)
    low = 0.0 if not outside(eps) else edge(start, eps)
    high = 1.0 if not outside(1 - eps) else edge(start, 1 - eps)
    return Interval(p_hat, low, high)


def srm_sequential_p_value(
    observed: list[tuple[float, float]],
    weights: list[tuple[float, float]],
    concentration: float = _SRM_CONCENTRATION,
) -> float | None:
    """Anytime-valid p-value of "the split is as configured" (sample-ratio mismatch).

    ``observed[i]`` is (champion, challenger) counts under split ``i`` and ``weights[i]`` its
    configured fractions. Each split contributes a beta-binomial mixture (prior centred on the
    configured share, ``concentration`` pseudo-counts) against its configured share; splits
    follow one another, so their product is a martingale and ``min(1, 1/product)`` may be
    looked at after every batch. None when no split has traffic; 0 when traffic went where
    none was configured.
    """
    log_m, seen = 0.0, False
    for (o_a, o_b), (w_a, w_b) in zip(observed, weights, strict=True):
        n = o_a + o_b
        if n <= 0:
            continue
        seen = True
        share = w_b / (w_a + w_b)
        if share <= 0.0 or share >= 1.0:
            if (share <= 0.0 and o_b > 0) or (share >= 1.0 and o_a > 0):
                return 0.0
            continue
        log_m += _log_mixture(o_b, n, share, concentration * share, concentration * (1 - share))
    if not seen:
        return None
    return 1.0 if log_m <= 0 else min(1.0, math.exp(-log_m))
