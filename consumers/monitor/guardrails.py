"""Guardrails of a running A/B test, decided from a report with statistical confidence.

``evaluate(report, Thresholds(...))`` is pure (no I/O): it reads a ``ComparisonReport`` and
returns a ``Verdict`` saying what to do, which guardrail decided it, why, and the figures
behind it. Every decision rests on an always-valid interval (``consumers.monitor.sequential``),
so the evaluator may be run after every batch without raising its false-alarm rate above
``alpha`` per guardrail. The guardrails, in the order they are checked:

``srm`` (action ``stop``)
    The anytime-valid sample-ratio-mismatch p-value is below ``srm``: the split is not what
    was configured, the comparison is void; stop the test.
``max_error_rate`` (``zero_traffic``)
    A *fraction* (0.05 = 5%). Trips when the lower bound of the challenger's own error rate
    (exact beta-binomial confidence sequence; fallbacks count as errors) is above it: "the
    challenger fails more often than allowed", whatever the champion does. Valid at any
    sample size, so it is not held back by ``min_samples``: a challenger failing every
    request trips after a handful.
``max_latency_p99_ms`` (``zero_traffic``)
    Trips, once the challenger has ``min_samples`` requests, when the lower bound of the share
    of its requests slower than the threshold is above 1%, i.e. its p99 is above the
    threshold with confidence. Requests are end to end (errors and fallbacks included: what
    callers of the challenger waited); only histogram buckets wholly above the threshold are
    counted, so bucketing can only delay a trip, never cause one.
``min_quality_delta`` (``zero_traffic``)
    In the primary quality metric's units (accuracy: a fraction; MAE: the target's units).
    Trips, once both arms have ``min_samples`` scored outcomes, when the sequential interval
    of challenger minus champion lies wholly beyond ``delta`` on the worse side (accuracy:
    upper bound < -delta; MAE: lower bound > +delta).
``promote_when_better`` (``promote``)
    When set, and nothing above tripped, the test is not void by SRM, the challenger's error
    rate is not significantly worse, and both arms have ``min_samples`` scored outcomes: promote
    when the sequential interval of the primary quality metric shows the challenger better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from consumers.monitor.latency import bucket_bounds
from consumers.monitor.report import ComparisonReport
from consumers.monitor.sequential import proportion_cs

__all__ = ["Action", "Thresholds", "Verdict", "evaluate"]

Action = Literal["stop", "zero_traffic", "promote"]
Figure = float | int | str | None
P99_TAIL = 0.01


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What a test must stay within; ``None`` switches a guardrail off."""

    max_error_rate: float | None = None
    max_latency_p99_ms: float | None = None
    srm: float | None = 0.001
    min_quality_delta: float | None = None
    min_samples: int = 100
    promote_when_better: bool = False
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0.0 <= self.max_error_rate < 1.0:
            raise ValueError("max_error_rate is a fraction in [0, 1)")
        if self.srm is not None and not 0.0 < self.srm < 1.0:
            raise ValueError("srm is a p-value threshold in (0, 1)")
        if self.min_quality_delta is not None and self.min_quality_delta < 0:
            raise ValueError("min_quality_delta must be >= 0")
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do: ``action`` None means carry on (``guardrail`` is then None too)."""

    action: Action | None
    guardrail: str | None
    reason: str
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def tripped(self) -> bool:
        return self.action in ("stop", "zero_traffic")


def evaluate(report: ComparisonReport, thresholds: Thresholds) -> Verdict:
    """The first guardrail ``report`` crosses (see the module), else a promotion, else none."""
    for check in (_srm, _error_rate, _latency, _quality, _promote):
        verdict = check(report, thresholds)
        if verdict is not None:
            return verdict
    return Verdict(None, None, "no guardrail crossed", _base(report))


def _base(r: ComparisonReport) -> dict[str, Figure]:
    return {
        "test_id": r.test_id,
        "champion_requests": r.champion.requests,
        "challenger_requests": r.challenger.requests,
    }


def _srm(r: ComparisonReport, t: Thresholds) -> Verdict | None:
    p = r.srm_sequential_p_value
    if t.srm is None or p is None or p >= t.srm:
        return None
    return Verdict(
        "stop",
        "srm",
        f"sample ratio mismatch: observed challenger share "
        f"{_pct(r.observed_challenger_share)} vs expected {_pct(r.expected_challenger_share)}, "
        f"anytime-valid p = {p:.2g} < {t.srm:g}",
        {
            **_base(r),
            "p_value": p,
            "threshold": t.srm,
            "observed_share": r.observed_challenger_share,
            "expected_share": r.expected_challenger_share,
            "chi2": r.srm.chi2 if r.srm else None,
        },
    )


def _error_rate(r: ComparisonReport, t: Thresholds) -> Verdict | None:
    b = r.challenger
    if t.max_error_rate is None:
        return None
    cs = proportion_cs(b.errors, b.requests, t.alpha)
    if cs is None or cs.low <= t.max_error_rate:
        return None
    return Verdict(
        "zero_traffic",
        "max_error_rate",
        f"challenger error rate {_pct(cs.estimate)} ({b.errors} of {b.requests}, "
        f"{b.fallbacks} answered by the champion); its {1 - t.alpha:.0%} confidence sequence "
        f"starts at {_pct(cs.low)}, above the limit {_pct(t.max_error_rate)}",
        {
            **_base(r),
            "errors": b.errors,
            "fallbacks": b.fallbacks,
            "error_rate": cs.estimate,
            "low": cs.low,
            "high": cs.high,
            "threshold": t.max_error_rate,
            "champion_error_rate": r.champion.error_rate,
        },
    )


def _latency(r: ComparisonReport, t: Thresholds) -> Verdict | None:
    b = r.challenger
    limit = t.max_latency_p99_ms
    if limit is None:
        return None
    n = sum(c for _, c in b.latency_all_buckets)
    if n < t.min_samples:
        return None
    slower = sum(c for bucket, c in b.latency_all_buckets if bucket_bounds(bucket)[0] >= limit)
    cs = proportion_cs(slower, n, t.alpha)
    if cs is None or cs.low <= P99_TAIL:
        return None
    p99 = b.latency_all_ms.get("p99")
    return Verdict(
        "zero_traffic",
        "max_latency_p99_ms",
        f"challenger p99 latency {_ms(p99)} above the limit {limit:g} ms: {slower} of {n} "
        f"requests slower, at least {_pct(cs.low)} with {1 - t.alpha:.0%} confidence (> 1%)",
        {
            **_base(r),
            "p99_ms": p99,
            "threshold_ms": limit,
            "requests": n,
            "slower": slower,
            "slower_share_low": cs.low,
            "slower_share": cs.estimate,
        },
    )


def _quality(r: ComparisonReport, t: Thresholds) -> Verdict | None:
    q, delta = r.quality, t.min_quality_delta
    if q is None or delta is None or q.sequential is None:
        return None
    if min(r.champion.scored, r.challenger.scored) < t.min_samples:
        return None
    s = q.sequential
    crossed = s.low > delta if q.lower_is_better else s.high < -delta
    if not crossed:
        return None
    return Verdict(
        "zero_traffic",
        "min_quality_delta",
        f"challenger {q.metric} worse than the champion's by more than {delta:g} with "
        f"{q.level:.0%} confidence: {q.describe()}",
        {**_base(r), **_quality_figures(r), "threshold": delta},
    )


def _promote(r: ComparisonReport, t: Thresholds) -> Verdict | None:
    q = r.quality
    if not t.promote_when_better or q is None or q.sequential is None:
        return None
    if min(r.champion.scored, r.challenger.scored) < t.min_samples:
        return None
    if r.srm is not None and r.srm.alert:
        return None
    if r.error_rate.finding == "worse" or q.finding != "better":
        return None
    return Verdict(
        "promote",
        "promote_when_better",
        f"challenger {q.metric} better with {q.level:.0%} confidence and no guardrail crossed: "
        f"{q.describe()}",
        {**_base(r), **_quality_figures(r)},
    )


def _quality_figures(r: ComparisonReport) -> dict[str, Figure]:
    q = r.quality
    assert q is not None
    assert q.sequential is not None
    return {
        "metric": q.metric,
        "champion": q.champion,
        "challenger": q.challenger,
        "difference": q.sequential.estimate,
        "low": q.sequential.low,
        "high": q.sequential.high,
        "champion_scored": r.champion.scored,
        "challenger_scored": r.challenger.scored,
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"
