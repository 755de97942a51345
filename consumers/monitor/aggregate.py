"""Per-batch aggregation of results and scored outcomes (pure, no I/O).

A batch of records becomes a ``Delta``: sums keyed by test, variant, model and minute, which
the store adds to its tables in one transaction and the metrics endpoint adds to its totals.
Everything here is a sum, so deltas merge by addition in any order.

Honest counting: a result a variant's model did not answer itself is not that model's answer.
A challenger result with ``fallback: champion`` (the challenger failed, the champion answered)
is an error of the challenger (coded by the start of ``fallback_reason``), its latency goes to
the all-requests histogram only (never to the variant's answers), and its outcome is counted
as ``fallback_outcomes``, never scored for either variant. Sums are keyed by the variant string
as it comes, so a ``shadow`` variant keeps sums of its own and never mixes into another.

Shadow tests: a shadow's result (``predictions.shadow``) is counted as variant ``shadow`` like
any result, and paired with the champion's answer to the same request: ``agreement`` sums, per
(test, shadow model, minute), the pairs, the pairs where both gave a readable prediction
(``compared``), how many of those agreed, and for values the absolute differences.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from consumers.monitor.latency import bucket_of
from consumers.monitor.scoring import Agreement, Scalar, Score, predicted_value
from registry.core.predictions import PredictionOutcome, PredictionResult

__all__ = [
    "AGREEMENT_COLUMNS",
    "AgreementKey",
    "Delta",
    "MinuteKey",
    "OutcomeRow",
    "ResultRow",
    "Unstorable",
    "VariantKey",
    "fallback_code",
    "minute_of",
]

VariantKey = tuple[str, str, str, int]
"""(test_id or "", variant, model_id, epoch minute)."""
MinuteKey = tuple[str, str, int, str, int]
"""(test_id or "", variant, split_version or 0, model_id, epoch minute)."""
AgreementKey = tuple[str, str, int]
"""(test_id, shadow model_id, epoch minute of the shadow's result)."""

# Column order of the running sums kept per key (mirrors the table columns).
MINUTE_COLUMNS = (
    "requests",
    "errors",
    "fallbacks",
    "cache_hits",
    "latency_sum_ms",
    "answers",
    "answer_latency_sum_ms",
    "answer_latency_sq_sum",
)
QUALITY_COLUMNS = (
    "scored",
    "correct",
    "numeric_n",
    "abs_err_sum",
    "sq_err_sum",
    "unscorable",
    "fallback_outcomes",
)

AGREEMENT_COLUMNS = ("pairs", "compared", "agreements", "numeric_n", "abs_diff_sum")

FALLBACK_CODE = "FALLBACK"
"""Error code of a fallback answer whose ``fallback_reason`` names no code."""
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


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


def fallback_code(reason: str | None) -> str:
    """The error code at the start of a ``fallback_reason`` (``"PROVIDER_TIMEOUT: ..."`` ->
    ``PROVIDER_TIMEOUT``); ``FALLBACK`` when the reason does not start with one."""
    head = (reason or "").split(":", 1)[0].strip()
    return head if _CODE.fullmatch(head) else FALLBACK_CODE


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
    fallback_answer: bool = False
    """The variant's model failed and another (the champion) answered in its place: counted
    as an error of this variant, its latency not as an answer, its outcome never scored."""

    @property
    def answered(self) -> bool:
        """The variant's own model gave this answer (no error, no fallback of any kind)."""
        return self.error_code is None and not self.fallback

    @classmethod
    def of(cls, r: PredictionResult) -> ResultRow:
        # A result's model is the one that served it; without one (an error before routing),
        # the one that was asked for.
        if not math.isfinite(r.latency_ms):
            raise Unstorable("latency_ms is not a finite number")
        if r.split_version is not None and not _storable(r.split_version):
            raise Unstorable("split_version is out of range")
        # A champion's answer under another variant's tag (the challenger failed) is that
        # variant's error, coded by the reason's code: never its answer, never scored.
        fallback_answer = r.fallback == "champion"
        error_code = (
            r.error.code
            if r.error is not None
            else fallback_code(r.fallback_reason)
            if fallback_answer
            else None
        )
        predicted = (
            None if r.error is not None or r.fallback is not None else predicted_value(r.output)
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
            error_code=error_code,
            fallback=r.fallback is not None,
            cached=r.cached,
            # A mock (the development fallback) is not the model's answer: nothing to score.
            predicted=predicted,
            fallback_answer=fallback_answer,
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
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0.0, 0, 0.0, 0.0])
    )
    latency: defaultdict[tuple[VariantKey, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    """Latency buckets of every result (errors and fallbacks included: what callers waited)."""
    answer_latency: defaultdict[tuple[VariantKey, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    """Latency buckets of the answers the variant's own model gave."""
    errors: defaultdict[tuple[VariantKey, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    quality: defaultdict[VariantKey, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0, 0])
    )
    labels: defaultdict[tuple[VariantKey, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0])
    )
    agreement: defaultdict[AgreementKey, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0.0])
    )
    """Shadow vs champion on the same requests (``AGREEMENT_COLUMNS``)."""

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
        bucket = bucket_of(row.latency_ms)
        self.latency[(row.key, bucket)] += 1
        if row.answered:
            sums[5] += 1
            sums[6] += row.latency_ms
            sums[7] += row.latency_ms * row.latency_ms
            self.answer_latency[(row.key, bucket)] += 1

    def add_fallback_outcome(self, key: VariantKey) -> None:
        """Count one joined outcome of a fallback answer (excluded from every quality sum)."""
        self.quality[key][6] += 1

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

    def add_pair(self, key: AgreementKey, a: Agreement | None) -> None:
        """Count one shadow paired with the champion's answer (``None``: not comparable)."""
        sums = self.agreement[key]
        sums[0] += 1
        if a is None:
            return
        sums[1] += 1
        sums[2] += a.agree
        if a.abs_difference is not None:
            sums[3] += 1
            sums[4] += a.abs_difference

    def __bool__(self) -> bool:
        return bool(self.minute or self.quality or self.agreement)
