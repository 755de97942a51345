"""The statistics of the comparison report, in closed form (no SciPy needed at run time).

- ``srm_test``: chi-square goodness of fit of observed variant counts against configured
  weights (sample-ratio mismatch), alert below ``SRM_ALPHA``;
- ``newcombe_diff``: Newcombe's hybrid score (Wilson) interval for a difference of two
  proportions, which behaves for small rates where the Wald interval does not;
- ``welch_diff``: Welch's interval for a difference of two means with unequal variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "SRM_ALPHA",
    "Interval",
    "SrmResult",
    "chi2_sf",
    "newcombe_diff",
    "srm_test",
    "t_cdf",
    "t_quantile",
    "welch_diff",
    "wilson",
]

SRM_ALPHA = 0.001
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Chi-square statistic, degrees of freedom and p-value; ``alert`` when p < alpha."""

    chi2: float
    dof: int
    p_value: float
    alert: bool


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with integer ``dof`` >= 1 (closed form)."""
    if dof < 1:
        raise ValueError("dof must be >= 1")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, dof // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    # Q(k/2, x/2) for odd k:
    #   erfc(sqrt(x/2)) + e^{-x/2} * sum_{i=1}^{(k-1)/2} (x/2)^{i-1/2} / Gamma(i+1/2)
    term = math.sqrt(half) / math.gamma(1.5)
    acc = 0.0
    for i in range(1, (dof - 1) // 2 + 1):
        if i > 1:
            term *= half / (i - 0.5)
        acc += term
    return min(1.0, total + math.exp(-half) * acc)


def srm_test(
    observed: list[tuple[float, float]],
    weights: list[tuple[float, float]],
    alpha: float = SRM_ALPHA,
) -> SrmResult | None:
    """Sample-ratio mismatch over one or more splits.

    ``observed[i]`` is (champion count, challenger count) under split ``i`` and ``weights[i]``
    its configured (champion, challenger) fractions. Each split adds one degree of freedom.
    None when no split has an expected count of at least 5 in every arm with weight.
    """
    chi2, dof = 0.0, 0
    for (o_a, o_b), (w_a, w_b) in zip(observed, weights, strict=True):
        n = o_a + o_b
        if n <= 0:
            continue
        total_w = w_a + w_b
        e_a, e_b = n * w_a / total_w, n * w_b / total_w
        if (e_a == 0 and o_a > 0) or (e_b == 0 and o_b > 0):
            return SrmResult(math.inf, max(dof, 1), 0.0, True)  # traffic where none was configured
        if e_a == 0 or e_b == 0:
            continue  # a 0% or 100% split that holds: nothing to test
        if min(e_a, e_b) < 5:
            continue  # too few for the chi-square approximation
        chi2 += (o_a - e_a) ** 2 / e_a + (o_b - e_b) ** 2 / e_b
        dof += 1
    if dof == 0:
        return None
    p = chi2_sf(chi2, dof)
    return SrmResult(chi2, dof, p, p < alpha)


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(x1: float, n1: float, x2: float, n2: float, z: float = Z95) -> Interval | None:
    """Interval for ``x2/n2 - x1/n1`` (Newcombe 1998, method 10); None if a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return Interval(d, low, high)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    y = t * t / (df + t * t)
    # Two forms of the same tail: each is accurate where its argument is not close to 1.
    tail = (
        0.5 * (1.0 - _betainc(0.5, df / 2.0, y))
        if y < 0.5
        else 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    )
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student t quantile (0.5 <= p < 1), by bisection on ``t_cdf``; normal for infinite df."""
    z = NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return z
    lo, hi = 0.0, max(1.0, z)
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def welch_diff(
    n1: float, mean1: float, var1: float, n2: float, mean2: float, var2: float, level: float = 0.95
) -> Interval | None:
    """Interval for ``mean2 - mean1`` (Welch); None unless both groups have n >= 2."""
    if n1 < 2 or n2 < 2:
        return None
    a, b = var1 / n1, var2 / n2
    se = math.sqrt(a + b)
    d = mean2 - mean1
    if se == 0:
        return Interval(d, d, d)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    t = t_quantile(0.5 + level / 2, max(df, 1.0))
    return Interval(d, d - t * se, d + t * se)
