"""Per-batch aggregation of results and scored outcomes (pure, no I/O).

A batch of records becomes a ``Delta``: sums keyed by test, variant, model and minute, which
the store adds to its tables in one transaction and the metrics endpoint adds to its totals.
Everything here is a sum, so deltas merge by addition in any order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from consumers.monitor.latency import bucket_of
from consumers.monitor.scoring import Scalar, Score, predicted_value
from registry.core.predictions import PredictionOutcome, PredictionResult

__all__ = [
    "Delta",
    "MinuteKey",
    "OutcomeRow",
    "ResultRow",
    "Unstorable",
    "VariantKey",
    "minute_of",
]

VariantKey = tuple[str, str, str, int]
"""(test_id or "", variant, model_id, epoch minute)."""
MinuteKey = tuple[str, str, int, str, int]
"""(test_id or "", variant, split_version or 0, model_id, epoch minute)."""

# Column order of the running sums kept per key (mirrors the table columns).
MINUTE_COLUMNS = ("requests", "errors", "fallbacks", "cache_hits", "latency_sum_ms")
QUALITY_COLUMNS = ("scored", "correct", "numeric_n", "abs_err_sum", "sq_err_sum", "unscorable")


_INT64 = (-(2**63), 2**63 - 1)


class Unstorable(ValueError):
    """A result or outcome that validates but holds a value the store cannot keep (a number
    outside 64 bits, a latency that is not finite...). ``reason`` never quotes the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _storable(value: Scalar | None) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    return math.isfinite(value)


def minute_of(result: PredictionResult) -> int:
    """The epoch minute a result belongs to (its ``occurred_at``)."""
    return int(result.occurred_at.timestamp() // 60)


@dataclass(frozen=True, slots=True)
class ResultRow:
    """What the monitor keeps of one result."""

    request_id: str
    result_id: str
    model_id: str
    variant: str
    test_id: str
    split_version: int
    minute: int
    latency_ms: float
    error_code: str | None
    fallback: bool
    cached: bool
    predicted: Scalar | None

    @classmethod
    def of(cls, r: PredictionResult) -> ResultRow:
        # A result's model is the one that served it; without one (an error before routing),
        # the one that was asked for.
        if not math.isfinite(r.latency_ms):
            raise Unstorable("latency_ms is not a finite number")
        if r.split_version is not None and not _storable(r.split_version):
            raise Unstorable("split_version is out of range")
        predicted = (
            None if r.error is not None or r.fallback == "mock" else predicted_value(r.output)
        )
        if not _storable(predicted):
            predicted = None  # a number no metric can use: the prediction is unscorable
        return cls(
            request_id=r.request_id,
            result_id=r.id,
            model_id=r.served_model_id or r.requested_model_id,
            variant=r.variant,
            test_id=r.test_id or "",
            split_version=r.split_version or 0,
            minute=minute_of(r),
            latency_ms=r.latency_ms,
            error_code=r.error.code if r.error is not None else None,
            fallback=r.fallback is not None,
            cached=r.cached,
            # A mock (the development fallback) is not the model's answer: nothing to score.
            predicted=predicted,
        )

    @property
    def key(self) -> VariantKey:
        return (self.test_id, self.variant, self.model_id, self.minute)


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """What the monitor keeps of one outcome."""

    request_id: str
    outcome_id: str
    actual: Scalar

    @classmethod
    def of(cls, o: PredictionOutcome) -> OutcomeRow:
        if not _storable(o.actual):
            raise Unstorable("actual is not a finite number within 64 bits")
        return cls(o.request_id, o.id, o.actual)


@dataclass(slots=True)
class Delta:
    """Sums to add: traffic per minute, latency buckets, error codes, quality, labels."""

    minute: defaultdict[MinuteKey, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0.0])
    )
    latency: defaultdict[tuple[VariantKey, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    errors: defaultdict[tuple[VariantKey, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    quality: defaultdict[VariantKey, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0])
    )
    labels: defaultdict[tuple[VariantKey, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0])
    )

    def add_result(self, row: ResultRow) -> None:
        """Count one (new, not duplicate) result."""
        sums = self.minute[(row.test_id, row.variant, row.split_version, row.model_id, row.minute)]
        sums[0] += 1
        if row.error_code is not None:
            sums[1] += 1
            self.errors[(row.key, row.error_code)] += 1
        sums[2] += row.fallback
        sums[3] += row.cached
        sums[4] += row.latency_ms
        self.latency[(row.key, bucket_of(row.latency_ms))] += 1

    def add_score(self, key: VariantKey, s: Score | None) -> None:
        """Count one joined outcome (``None``: it could not be scored)."""
        q = self.quality[key]
        if s is None:
            q[5] += 1
            return
        q[0] += 1
        q[1] += s.correct
        if s.error is not None:
            q[2] += 1
            q[3] += abs(s.error)
            q[4] += s.error * s.error
        if s.predicted_label is not None and s.actual_label is not None:
            if s.correct:
                self.labels[(key, s.actual_label)][0] += 1
            else:
                self.labels[(key, s.predicted_label)][1] += (
                    1  # false positive for the predicted label
                )
                self.labels[(key, s.actual_label)][2] += 1  # false negative for the true one

    def __bool__(self) -> bool:
        return bool(self.minute or self.quality)
