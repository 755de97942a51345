"""The champion/challenger comparison report, read from the monitor database.

``build_report(db, "lead-scoring-v1")`` finds the test (by test id, champion or challenger;
the running one first, else the latest) and compares its two variants: traffic share against
the configured split with a sample-ratio-mismatch test, error rate and quality with 95%
intervals on the difference, latency percentiles, and a verdict with the numbers behind it.
The same figures (with Wald intervals) are in the ``ab_comparison`` SQL view.

Each difference has two intervals: ``sequential`` (an always-valid confidence sequence, see
``consumers.monitor.sequential``: valid however often the report is looked at) and
``fixed_horizon`` (Newcombe / Welch: valid only for one look at a sample size planned in
advance). The verdict is decided by the sequential ones.

Honest counting (``consumers.monitor.aggregate``): a challenger's request the champion answered
(``fallback: champion``) is a challenger error, never scored; ``latency_ms`` are percentiles
of the answers the variant's own model gave, ``latency_all_ms`` of every request.

Shadow tests (``mode: shadow``): the challenger answers mirrored copies of the champion's
requests (variant ``shadow``, never anyone's answer). The report compares champion and shadow
the same way - ``challenger`` holds the shadow arm, ``mode`` says so, the verdict reads
``shadow better`` / ``shadow worse`` - without the SRM check (mirrors are best-effort: a full
lane drops them), and adds ``agreement``: the share of mirrored requests where the shadow's
prediction equals the champion's (values within a relative 1e-6), and the mean absolute
difference of values.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from consumers.monitor.errors import TestNotFound
from consumers.monitor.latency import percentiles
from consumers.monitor.schema import ensure_math
from consumers.monitor.scoring import AGREEMENT_ABS_TOL, AGREEMENT_REL_TOL, kind_of
from consumers.monitor.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_TUNE_N,
    diff_means_cs,
    diff_proportions_cs,
    srm_sequential_p_value,
)
from consumers.monitor.significance import Interval, SrmResult, newcombe_diff, srm_test, welch_diff

__all__ = [
    "Comparison",
    "ComparisonReport",
    "ShadowAgreement",
    "VariantStats",
    "build_report",
    "open_readonly",
    "resolve_test",
]

VERDICT_BETTER = "challenger better"
VERDICT_WORSE = "challenger worse"
VERDICT_WAIT = "not yet enough data"
VERDICT_SRM = "no verdict: sample ratio mismatch"
VERDICT_SHADOW_BETTER = "shadow better"
VERDICT_SHADOW_WORSE = "shadow worse"
VARIANTS = ("champion", "challenger")
MODE_SPLIT, MODE_SHADOW = "split", "shadow"


@dataclass(frozen=True, slots=True)
class VariantStats:
    """One arm of the test.

    ``errors`` include the requests another model answered in this arm's place (``fallbacks``
    of the challenger); ``fallback_outcomes`` counts the outcomes of such answers, excluded
    from every quality figure. ``latency_ms`` / ``mean_latency_ms`` / ``latency_variance``
    describe the ``answers`` the arm's own model gave (a challenger that fails every request
    has none, so it can never look fast); ``latency_all_ms`` / ``mean_latency_all_ms`` every
    request, end to end (a fallback's time includes the failed attempt). The ``*_buckets``
    are the latency histograms as (bucket, count) pairs (``consumers.monitor.latency``).
    """

    variant: str
    model_id: str
    requests: int = 0
    share: float | None = None
    errors: int = 0
    error_rate: float | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    cache_hits: int = 0
    mean_latency_ms: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    answers: int = 0
    latency_variance: float | None = None
    mean_latency_all_ms: float | None = None
    latency_all_ms: dict[str, float | None] = field(default_factory=dict)
    latency_buckets: tuple[tuple[int, int], ...] = ()
    latency_all_buckets: tuple[tuple[int, int], ...] = ()
    scored: int = 0
    unscorable: int = 0
    fallback_outcomes: int = 0
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    mae: float | None = None
    mse: float | None = None
    mae_variance: float | None = None
    correct: int = 0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Challenger minus champion on one metric, with two intervals and what they show.

    ``sequential`` is an always-valid confidence sequence (valid at every look; it decides
    ``finding`` and the verdict); ``difference`` (also ``fixed_horizon``) is the classic
    interval, valid only for a single look at a sample size planned in advance.
    """

    metric: str
    champion: float | None
    challenger: float | None
    difference: Interval | None
    lower_is_better: bool
    enough_data: bool
    sequential: Interval | None = None
    level: float = 1 - DEFAULT_ALPHA
    arm: str = "challenger"
    """What the challenger arm is called: ``shadow`` in a shadow test."""

    @property
    def fixed_horizon(self) -> Interval | None:
        """The fixed-horizon interval (Newcombe or Welch): one planned look only."""
        return self.difference

    def _finding(self, d: Interval | None) -> Literal["better", "worse"] | None:
        if d is None or not self.enough_data or not d.excludes_zero:
            return None
        challenger_higher = d.low > 0
        return "worse" if challenger_higher == self.lower_is_better else "better"

    @property
    def finding(self) -> Literal["better", "worse"] | None:
        """ "better"/"worse" when the *sequential* interval excludes 0 on enough data."""
        return self._finding(self.sequential)

    @property
    def fixed_horizon_finding(self) -> Literal["better", "worse"] | None:
        """What the fixed-horizon interval alone would say (not valid under peeking)."""
        return self._finding(self.difference)

    def describe(self) -> str:
        """E.g. ``error rate 10.00% (challenger) vs 5.00% (champion): +5.00 pp (sequential 95%
        CS +2.81 to +7.19; fixed-horizon 95% CI +3.66 to +6.47)``."""
        pct = self.metric in {"error rate", "accuracy"}

        def fmt(v: float) -> str:
            return f"{v * 100:.2f}%" if pct else f"{v:.4g}"

        d = self.sequential or self.difference
        if d is None or self.champion is None or self.challenger is None:
            return f"{self.metric}: not enough data"
        scale, unit = (100 if pct else 1), (" pp" if pct else "")
        level = f"{self.level * 100:g}%"

        def span(i: Interval | None) -> str:
            return "-" if i is None else f"{i.low * scale:+.2f} to {i.high * scale:+.2f}"

        return (
            f"{self.metric} {fmt(self.challenger)} ({self.arm}) vs {fmt(self.champion)} "
            f"(champion): {d.estimate * scale:+.2f}{unit} (sequential {level} CS "
            f"{span(self.sequential)}; fixed-horizon {level} CI {span(self.difference)})"
        )


@dataclass(frozen=True, slots=True)
class ShadowAgreement:
    """Shadow vs champion on the same (mirrored) requests.

    ``pairs``: shadow results paired with the champion's answer to their request;
    ``compared``: pairs where both gave a readable prediction (no error, no fallback);
    ``agreement_rate`` = ``agreements`` / ``compared`` (labels equal; values equal within
    ``rel_tol`` of the larger or ``abs_tol``); ``mean_abs_difference`` over the ``numeric_n``
    pairs of values (regression, forecasting); ``unpaired``: shadow results whose champion
    answer has not been read (yet, or within the join window).
    """

    pairs: int = 0
    compared: int = 0
    agreements: int = 0
    agreement_rate: float | None = None
    numeric_n: int = 0
    mean_abs_difference: float | None = None
    unpaired: int = 0
    rel_tol: float = AGREEMENT_REL_TOL
    abs_tol: float = AGREEMENT_ABS_TOL


@dataclass(frozen=True, slots=True)
class ComparisonReport:
    """Champion vs challenger for one test."""

    test_id: str
    champion_model_id: str
    challenger_model_id: str
    model_type: str | None
    configured_challenger_pct: float
    split_version: int
    started_at: str
    stopped_at: str | None
    champion: VariantStats
    challenger: VariantStats
    expected_challenger_share: float | None
    observed_challenger_share: float | None
    srm: SrmResult | None
    error_rate: Comparison
    quality: Comparison | None
    verdict: str
    reasons: list[str]
    latency: Comparison | None = None
    """Mean latency of the arms' own answers (informational: not part of the verdict)."""
    srm_sequential_p_value: float | None = None
    """Anytime-valid SRM p-value (beta-binomial mixture; the guardrails use it)."""
    alpha: float = DEFAULT_ALPHA
    sequential_tune_n: int = DEFAULT_TUNE_N
    mode: str = MODE_SPLIT
    """``split`` or ``shadow`` (then ``challenger`` holds the shadow arm, variant ``shadow``)."""
    agreement: ShadowAgreement | None = None
    """Shadow tests only: how often the shadow's prediction equals the champion's."""

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def arm(self) -> str:
        """The challenger arm's name: ``challenger``, or ``shadow`` in a shadow test."""
        return "shadow" if self.mode == MODE_SHADOW else "challenger"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""

        def comp(c: Comparison | None) -> dict[str, Any] | None:
            if c is None:
                return None
            return {
                "metric": c.metric,
                "champion": c.champion,
                "challenger": c.challenger,
                "difference": asdict(c.difference) if c.difference else None,
                "fixed_horizon": asdict(c.difference) if c.difference else None,
                "sequential": asdict(c.sequential) if c.sequential else None,
                "level": c.level,
                "lower_is_better": c.lower_is_better,
                "enough_data": c.enough_data,
                "finding": c.finding,
                "fixed_horizon_finding": c.fixed_horizon_finding,
            }

        out = {
            k: getattr(self, k)
            for k in (
                "test_id",
                "champion_model_id",
                "challenger_model_id",
                "model_type",
                "configured_challenger_pct",
                "split_version",
                "started_at",
                "stopped_at",
                "expected_challenger_share",
                "observed_challenger_share",
                "verdict",
                "reasons",
                "srm_sequential_p_value",
                "alpha",
                "sequential_tune_n",
                "mode",
            )
        }
        out["agreement"] = asdict(self.agreement) if self.agreement else None
        out["running"] = self.running
        out["champion"], out["challenger"] = asdict(self.champion), asdict(self.challenger)
        out["srm"] = asdict(self.srm) if self.srm else None
        if self.srm and self.srm.chi2 == float("inf"):
            out["srm"]["chi2"] = None
        out["error_rate"], out["quality"] = comp(self.error_rate), comp(self.quality)
        out["latency"] = comp(self.latency)
        return out


def open_readonly(db_path: Path | str) -> sqlite3.Connection:
    """A read-only connection (the monitor may be writing at the same time)."""
    path = Path(db_path)
    if not path.exists():
        raise FileNotFoundError(
            f"no monitor database at {path}; run `model-registry monitor` (or `up`) first"
        )
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    ensure_math(db)
    return db


def resolve_test(db: sqlite3.Connection, ref: str) -> sqlite3.Row:
    """The test ``ref`` names: a test id, else the running (or latest) test of that model."""
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT * FROM ab_tests WHERE test_id = ?", (ref,)).fetchone()
    if row is None:
        row = db.execute(
            "SELECT * FROM ab_tests WHERE champion_model_id = ?1 OR challenger_model_id = ?1 "
            "ORDER BY stopped_at IS NULL DESC, started_at DESC LIMIT 1",
            (ref,),
        ).fetchone()
    if row is None:
        known = [
            r[0]
            for r in db.execute("SELECT test_id FROM ab_tests ORDER BY started_at DESC LIMIT 10")
        ]
        hint = (
            f" Known tests: {', '.join(known)}."
            if known
            else " The monitor has seen no A/B test yet."
        )
        raise TestNotFound(f"no A/B test with id, champion or challenger '{ref}'.{hint}")
    return row  # type: ignore[no-any-return]


def _variant_stats(
    db: sqlite3.Connection, test_id: str, variant: str, model_id: str, total: int
) -> VariantStats:
    args = (test_id, variant)
    where = "WHERE test_id = ? AND variant = ?"
    req, err, fb, ch, lat, answers, ans_sum, ans_sq = db.execute(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), "
        "COALESCE(SUM(fallbacks), 0), COALESCE(SUM(cache_hits), 0), "
        "COALESCE(SUM(latency_sum_ms), 0), COALESCE(SUM(answers), 0), "
        "COALESCE(SUM(answer_latency_sum_ms), 0), COALESCE(SUM(answer_latency_sq_sum), 0) "
        f"FROM variant_minute {where}",
        args,
    ).fetchone()

    def histogram(table: str) -> dict[int, int]:
        sql = f"SELECT bucket, SUM(count) FROM {table} {where} GROUP BY bucket ORDER BY bucket"
        return dict(db.execute(sql, args).fetchall())

    buckets_all = histogram("variant_latency")
    buckets = histogram("variant_answer_latency")
    codes = dict(
        db.execute(
            f"SELECT code, SUM(count) FROM variant_errors {where} GROUP BY code", args
        ).fetchall()
    )
    n, correct, num_n, abs_sum, sq_sum, unscorable, fallback_outcomes = db.execute(
        "SELECT COALESCE(SUM(scored), 0), COALESCE(SUM(correct), 0), COALESCE(SUM(numeric_n), 0), "
        "COALESCE(SUM(abs_err_sum), 0), COALESCE(SUM(sq_err_sum), 0), "
        "COALESCE(SUM(unscorable), 0), COALESCE(SUM(fallback_outcomes), 0) "
        f"FROM variant_quality {where}",
        args,
    ).fetchone()
    labels = db.execute(
        f"SELECT label, SUM(tp), SUM(fp), SUM(fn) FROM variant_labels {where} GROUP BY label", args
    ).fetchall()
    precision, recall = _precision_recall(labels)
    mae = abs_sum / num_n if num_n else None
    mean_answer = ans_sum / answers if answers else None
    return VariantStats(
        variant=variant,
        model_id=model_id,
        requests=req,
        share=req / total if total else None,
        errors=err,
        error_rate=err / req if req else None,
        errors_by_code=codes,
        fallbacks=fb,
        cache_hits=ch,
        mean_latency_ms=mean_answer,
        latency_ms=percentiles(buckets),
        answers=answers,
        latency_variance=_variance(answers, mean_answer, ans_sq),
        mean_latency_all_ms=lat / req if req else None,
        latency_all_ms=percentiles(buckets_all),
        latency_buckets=tuple(buckets.items()),
        latency_all_buckets=tuple(buckets_all.items()),
        scored=n,
        unscorable=unscorable,
        fallback_outcomes=fallback_outcomes,
        correct=correct,
        accuracy=correct / n if n else None,
        precision=precision,
        recall=recall,
        mae=mae,
        mse=sq_sum / num_n if num_n else None,
        mae_variance=_variance(num_n, mae, sq_sum),
    )


def _variance(n: int, mean: float | None, sq_sum: float) -> float | None:
    """Sample variance from a count, a mean and a sum of squares (never negative)."""
    if mean is None or n < 2:
        return None
    return max(0.0, (sq_sum - n * mean * mean) / (n - 1))


def _precision_recall(labels: list[tuple[str, int, int, int]]) -> tuple[float | None, float | None]:
    """Binary labels (true/false, 1/0): of the positive class; otherwise macro averages."""
    names = {label for label, *_ in labels}
    positive = "true" if names <= {"true", "false"} else "1" if names <= {"0", "1"} else None
    chosen = [row for row in labels if row[0] == positive] if positive else labels
    precisions = [tp / (tp + fp) for _, tp, fp, _ in chosen if tp + fp]
    recalls = [tp / (tp + fn) for _, tp, _, fn in chosen if tp + fn]
    return (
        sum(precisions) / len(precisions) if precisions else None,
        sum(recalls) / len(recalls) if recalls else None,
    )


def _agreement(db: sqlite3.Connection, test_id: str, shadow_requests: int) -> ShadowAgreement:
    pairs, compared, agreements, numeric_n, abs_sum = db.execute(
        "SELECT COALESCE(SUM(pairs), 0), COALESCE(SUM(compared), 0), "
        "COALESCE(SUM(agreements), 0), COALESCE(SUM(numeric_n), 0), "
        "COALESCE(SUM(abs_diff_sum), 0) FROM shadow_agreement WHERE test_id = ?",
        (test_id,),
    ).fetchone()
    return ShadowAgreement(
        pairs=pairs,
        compared=compared,
        agreements=agreements,
        agreement_rate=agreements / compared if compared else None,
        numeric_n=numeric_n,
        mean_abs_difference=abs_sum / numeric_n if numeric_n else None,
        unpaired=max(0, shadow_requests - pairs),
    )


def _mirrored_share(db: sqlite3.Connection, test: sqlite3.Row) -> float | None:
    """The share of the champion's requests the splits expect to be mirrored."""
    splits = dict(
        db.execute(
            "SELECT split_version, traffic_percentage FROM ab_splits WHERE test_id = ?",
            (test["test_id"],),
        ).fetchall()
    )
    expected, total = 0.0, 0
    for sv, n in db.execute(
        "SELECT split_version, SUM(requests) FROM variant_minute WHERE test_id = ? AND "
        "variant = 'champion' GROUP BY split_version",
        (test["test_id"],),
    ):
        expected += n * splits.get(sv, test["traffic_percentage"]) / 100.0
        total += n
    return expected / total if total else None


def _srm(
    db: sqlite3.Connection, test: sqlite3.Row
) -> tuple[SrmResult | None, float | None, float | None]:
    """The SRM test over every split version, the challenger share the splits expect, and the
    anytime-valid SRM p-value."""
    splits = dict(
        db.execute(
            "SELECT split_version, traffic_percentage FROM ab_splits WHERE test_id = ?",
            (test["test_id"],),
        ).fetchall()
    )
    observed, weights, expected, total = [], [], 0.0, 0
    rows = db.execute(
        "SELECT split_version, SUM(CASE variant WHEN 'champion' THEN requests ELSE 0 END), "
        "SUM(CASE variant WHEN 'challenger' THEN requests ELSE 0 END) FROM variant_minute "
        "WHERE test_id = ? AND variant IN ('champion', 'challenger') GROUP BY split_version",
        (test["test_id"],),
    )
    for sv, a, b in rows:
        pct = splits.get(sv, test["traffic_percentage"]) / 100.0
        observed.append((a, b))
        weights.append((1 - pct, pct))
        expected += (a + b) * pct
        total += a + b
    return (
        srm_test(observed, weights),
        (expected / total if total else None),
        srm_sequential_p_value(observed, weights),
    )


def build_report(
    db_path: Path | str,
    ref: str,
    *,
    min_requests: int = 100,
    min_scored: int = 30,
    alpha: float = DEFAULT_ALPHA,
    tune_n: int = DEFAULT_TUNE_N,
) -> ComparisonReport:
    """The comparison report of the test ``ref`` names (see ``resolve_test``).

    ``alpha`` is the error level of both kinds of interval (0.05: 95%); ``tune_n`` the sample
    size (both arms) at which the sequential intervals are tightest (valid at every size).

    Raises:
        TestNotFound: no test matches ``ref``.
        FileNotFoundError: there is no monitor database at ``db_path``.
    """
    with open_readonly(db_path) as db:
        test = resolve_test(db, ref)
        test_id = test["test_id"]
        # A database the monitor has not migrated yet (schema 2) has no mode: split.
        mode = test["mode"] if "mode" in test.keys() else MODE_SPLIT  # noqa: SIM118
        shadow = mode == MODE_SHADOW
        arm = "shadow" if shadow else "challenger"
        # The shares: of all the test's requests (split); of the champion's (shadow: every
        # request is the champion's, a share of them is mirrored).
        total = db.execute(
            "SELECT COALESCE(SUM(requests), 0) FROM variant_minute WHERE test_id = ? AND variant "
            "IN (?, ?)",
            (test_id, "champion", "champion" if shadow else "challenger"),
        ).fetchone()[0]
        champion = _variant_stats(db, test_id, "champion", test["champion_model_id"], total)
        challenger = _variant_stats(db, test_id, arm, test["challenger_model_id"], total)
        type_row = db.execute(
            "SELECT type FROM models WHERE model_id = ?", (test["champion_model_id"],)
        ).fetchone()
        agreement = None
        if shadow:
            # No SRM check: mirrors are best-effort (a full challenger lane drops them).
            srm, expected_share, srm_seq = None, _mirrored_share(db, test), None
            agreement = _agreement(db, test_id, challenger.requests)
        else:
            srm, expected_share, srm_seq = _srm(db, test)
    model_type = type_row[0] if type_row else None
    z = NormalDist().inv_cdf(1 - alpha / 2)
    level = 1 - alpha
    a, b = champion, challenger
    error_rate = Comparison(
        "error rate",
        a.error_rate,
        b.error_rate,
        newcombe_diff(a.errors, a.requests, b.errors, b.requests, z),
        lower_is_better=True,
        enough_data=min(a.requests, b.requests) >= min_requests,
        sequential=diff_proportions_cs(a.errors, a.requests, b.errors, b.requests, alpha, tune_n),
        level=level,
        arm=arm,
    )
    quality = _quality(a, b, model_type, min_scored, alpha, tune_n, arm)
    latency = _latency(a, b, min_requests, alpha, tune_n, arm)
    verdict, reasons = _verdict(
        srm, error_rate, quality, champion, challenger, min_requests, min_scored, arm
    )
    if agreement is not None:
        reasons.append(_describe_agreement(agreement))
    return ComparisonReport(
        test_id=test_id,
        champion_model_id=test["champion_model_id"],
        challenger_model_id=test["challenger_model_id"],
        model_type=model_type,
        configured_challenger_pct=test["traffic_percentage"],
        split_version=test["split_version"],
        started_at=test["started_at"],
        stopped_at=test["stopped_at"],
        champion=champion,
        challenger=challenger,
        expected_challenger_share=expected_share,
        observed_challenger_share=challenger.share,
        srm=srm,
        error_rate=error_rate,
        quality=quality,
        verdict=verdict,
        reasons=reasons,
        latency=latency,
        srm_sequential_p_value=srm_seq,
        alpha=alpha,
        sequential_tune_n=tune_n,
        mode=mode,
        agreement=agreement,
    )


def _describe_agreement(g: ShadowAgreement) -> str:
    if g.agreement_rate is None:
        return f"agreement: no mirrored request compared yet ({g.pairs} paired)"
    text = (
        f"agreement {g.agreement_rate * 100:.2f}% ({g.agreements} of {g.compared} mirrored "
        "requests: the shadow predicted what the champion answered)"
    )
    if g.mean_abs_difference is not None:
        text += f"; mean absolute difference {g.mean_abs_difference:.4g}"
    return text


def _latency(
    a: VariantStats,
    b: VariantStats,
    min_requests: int,
    alpha: float,
    tune_n: int,
    arm: str = "challenger",
) -> Comparison | None:
    """Mean latency of each arm's own answers, challenger minus champion."""
    if a.mean_latency_ms is None or b.mean_latency_ms is None:
        return None
    fixed = seq = None
    if a.latency_variance is not None and b.latency_variance is not None:
        fixed = welch_diff(
            a.answers,
            a.mean_latency_ms,
            a.latency_variance,
            b.answers,
            b.mean_latency_ms,
            b.latency_variance,
            1 - alpha,
        )
        seq = diff_means_cs(
            a.answers,
            a.mean_latency_ms,
            a.latency_variance,
            b.answers,
            b.mean_latency_ms,
            b.latency_variance,
            alpha,
            tune_n,
        )
    return Comparison(
        "mean latency ms",
        a.mean_latency_ms,
        b.mean_latency_ms,
        fixed,
        lower_is_better=True,
        enough_data=min(a.answers, b.answers) >= min_requests,
        sequential=seq,
        level=1 - alpha,
        arm=arm,
    )


def _quality(
    a: VariantStats,
    b: VariantStats,
    model_type: str | None,
    min_scored: int,
    alpha: float = DEFAULT_ALPHA,
    tune_n: int = DEFAULT_TUNE_N,
    arm: str = "challenger",
) -> Comparison | None:
    if a.scored == 0 and b.scored == 0:
        return None
    if model_type is not None:
        regression = kind_of(model_type, 0) == "regression"
    else:  # not registered as far as the monitor knows: labels mean classification
        regression = a.precision is None and b.precision is None and a.mae is not None
    enough = min(a.scored, b.scored) >= min_scored
    level = 1 - alpha
    if regression:
        diff = seq = None
        if (
            a.mae is not None
            and b.mae is not None
            and a.mae_variance is not None
            and b.mae_variance is not None
        ):
            diff = welch_diff(
                a.scored, a.mae, a.mae_variance, b.scored, b.mae, b.mae_variance, level
            )
            seq = diff_means_cs(
                a.scored, a.mae, a.mae_variance, b.scored, b.mae, b.mae_variance, alpha, tune_n
            )
        return Comparison(
            "MAE",
            a.mae,
            b.mae,
            diff,
            lower_is_better=True,
            enough_data=enough,
            sequential=seq,
            level=level,
            arm=arm,
        )
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return Comparison(
        "accuracy",
        a.accuracy,
        b.accuracy,
        newcombe_diff(a.correct, a.scored, b.correct, b.scored, z),
        lower_is_better=False,
        enough_data=enough,
        sequential=diff_proportions_cs(a.correct, a.scored, b.correct, b.scored, alpha, tune_n),
        level=level,
        arm=arm,
    )


def _verdict(
    srm: SrmResult | None,
    error_rate: Comparison,
    quality: Comparison | None,
    a: VariantStats,
    b: VariantStats,
    min_requests: int,
    min_scored: int,
    arm: str = "challenger",
) -> tuple[str, list[str]]:
    if srm is not None and srm.alert:
        return VERDICT_SRM, [
            f"sample ratio mismatch: chi-square {srm.chi2:.1f} on {srm.dof} dof, p = "
            f"{srm.p_value:.2g} < 0.001; "
            "the split is not what was configured, so the comparison is not trustworthy"
        ]
    comparisons = [c for c in (error_rate, quality) if c is not None]
    worse = [c for c in comparisons if c.finding == "worse"]
    better = [c for c in comparisons if c.finding == "better"]
    notes = (
        [
            f"{b.fallbacks} {arm} requests were answered by the champion (fallback): "
            f"counted as {arm} errors, their {b.fallback_outcomes} outcomes not scored"
        ]
        if b.fallbacks
        else []
    )
    shadow = arm == "shadow"
    if worse:
        return (VERDICT_SHADOW_WORSE if shadow else VERDICT_WORSE), [
            c.describe() for c in worse
        ] + notes
    if better:
        return (VERDICT_SHADOW_BETTER if shadow else VERDICT_BETTER), [
            c.describe() for c in better
        ] + notes
    reasons = []
    if min(a.requests, b.requests) < min_requests:
        reasons.append(
            f"requests {a.requests} (champion) / {b.requests} ({arm}); need {min_requests} each"
        )
    if quality is None:
        reasons.append("no outcomes joined yet")
    elif min(a.scored, b.scored) < min_scored:
        reasons.append(f"scored outcomes {a.scored} / {b.scored}; need {min_scored} each")
    reasons += [
        f"{c.describe()}: the sequential interval includes 0"
        for c in comparisons
        if c.enough_data and c.finding is None
    ]
    return VERDICT_WAIT, reasons + notes
