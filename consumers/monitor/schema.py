"""The monitor's SQLite schema: tables, indexes and the report's SQL views.

Tables (``test_id`` is ``''`` and ``split_version`` 0 for results outside any A/B test;
``minute`` is minutes since the Unix epoch, UTC):

- ``variant_minute``: requests, errors, fallbacks, cache hits, latency sum per
  (test, variant, split version, model, minute);
- ``variant_latency``: latency histogram counts of every result per (test, variant, model,
  minute, bucket), with ``latency_buckets`` giving each bucket's bounds in ms;
  ``variant_answer_latency``: the same of the answers the variant's own model gave (no
  errors, no fallbacks);
- ``variant_errors``: error counts by code; ``variant_quality``: joined outcomes (scored,
  correct, absolute and squared error sums); ``variant_labels``: per-label tp/fp/fn;
- ``ab_tests`` / ``ab_splits`` / ``models``: folded from ``registry.events``;
- ``predictions`` / ``pending_outcomes``: the join window (results waiting for their
  outcome and outcomes waiting for their result), also the results' dedupe set;
- ``checkpoints``: the next offset per topic partition, written in the same transaction as
  the rows; ``log_resets``: when a prediction log came back shorter than the stored position;
  ``monitor_counters``: totals (duplicates, DLQ, expired outcomes...);
- ``shadow_predictions``: a shadow test's mirrored answers (``predictions.shadow``), kept for
  the join window to pair with the champion's answer to the same request and with its
  outcome; ``shadow_agreement``: per (test, shadow model, minute) the pairs compared and how
  many agreed (and the sum of absolute differences of values).

Views: ``variant_minute_stats``, ``variant_quality_stats``, ``ab_variant_summary``,
``ab_variant_latency``, ``ab_srm`` and ``ab_comparison`` (the report as SQL).
"""

from __future__ import annotations

import math
import sqlite3

from consumers.monitor.latency import N_BUCKETS, bucket_bounds

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "VIEWS", "bucket_rows", "ensure_math"]

SCHEMA_VERSION = "3"
"""2: fallback answers are errors; answers' own latency; fallback outcomes apart.
3: shadow tests: ``ab_tests.mode``, ``predictions.actual``, ``shadow_predictions``,
``shadow_agreement`` (a version-2 file is migrated in place, see ``MIGRATIONS``)."""

MIGRATIONS: dict[str, tuple[str, str]] = {
    "2": (
        "3",
        "ALTER TABLE ab_tests ADD COLUMN mode TEXT NOT NULL DEFAULT 'split'; "
        "ALTER TABLE predictions ADD COLUMN actual TEXT;",
    ),
}
"""From a version: (the version it becomes, the statements). Only added columns and tables:
what was counted stays; the registry fold rewrites each test's mode on the next start."""

_KEY = (
    "test_id TEXT NOT NULL, variant TEXT NOT NULL, model_id TEXT NOT NULL, minute INTEGER NOT NULL"
)
_PK = "test_id, variant, model_id, minute"

TABLES = f"""
CREATE TABLE IF NOT EXISTS monitor_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS log_resets(
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    stored_offset INTEGER NOT NULL, high_watermark INTEGER, reset_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS monitor_counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models(
    model_id TEXT PRIMARY KEY, type TEXT NOT NULL, version TEXT, status TEXT);
CREATE TABLE IF NOT EXISTS ab_tests(
    test_id TEXT PRIMARY KEY, champion_model_id TEXT NOT NULL, challenger_model_id TEXT NOT NULL,
    traffic_percentage REAL NOT NULL, split_version INTEGER NOT NULL, routing TEXT,
    started_at TEXT NOT NULL, stopped_at TEXT, mode TEXT NOT NULL DEFAULT 'split');
CREATE INDEX IF NOT EXISTS ab_tests_champion ON ab_tests(champion_model_id);
CREATE INDEX IF NOT EXISTS ab_tests_challenger ON ab_tests(challenger_model_id);
CREATE TABLE IF NOT EXISTS ab_splits(
    test_id TEXT NOT NULL, split_version INTEGER NOT NULL, traffic_percentage REAL NOT NULL,
    since TEXT NOT NULL, PRIMARY KEY (test_id, split_version));
CREATE TABLE IF NOT EXISTS variant_minute(
    test_id TEXT NOT NULL, variant TEXT NOT NULL, split_version INTEGER NOT NULL,
    model_id TEXT NOT NULL, minute INTEGER NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, fallbacks INTEGER NOT NULL,
    cache_hits INTEGER NOT NULL, latency_sum_ms REAL NOT NULL,
    answers INTEGER NOT NULL, answer_latency_sum_ms REAL NOT NULL,
    answer_latency_sq_sum REAL NOT NULL,
    PRIMARY KEY (test_id, variant, split_version, model_id, minute)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS variant_minute_model ON variant_minute(model_id, minute);
CREATE TABLE IF NOT EXISTS variant_latency(
    {_KEY}, bucket INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY ({_PK}, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variant_answer_latency(
    {_KEY}, bucket INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY ({_PK}, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variant_errors(
    {_KEY}, code TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY ({_PK}, code)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variant_quality(
    {_KEY}, scored INTEGER NOT NULL, correct INTEGER NOT NULL, numeric_n INTEGER NOT NULL,
    abs_err_sum REAL NOT NULL, sq_err_sum REAL NOT NULL, unscorable INTEGER NOT NULL,
    fallback_outcomes INTEGER NOT NULL,
    PRIMARY KEY ({_PK})) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variant_labels(
    {_KEY}, label TEXT NOT NULL, tp INTEGER NOT NULL, fp INTEGER NOT NULL, fn INTEGER NOT NULL,
    PRIMARY KEY ({_PK}, label)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_buckets(
    bucket INTEGER PRIMARY KEY, lower_ms REAL NOT NULL, upper_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS predictions(
    request_id TEXT PRIMARY KEY, test_id TEXT NOT NULL, variant TEXT NOT NULL,
    model_id TEXT NOT NULL, minute INTEGER NOT NULL, predicted TEXT, errored INTEGER NOT NULL,
    joined INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL,
    fallback INTEGER NOT NULL DEFAULT 0, actual TEXT);
CREATE INDEX IF NOT EXISTS predictions_received ON predictions(received_at);
CREATE TABLE IF NOT EXISTS shadow_predictions(
    request_id TEXT PRIMARY KEY, test_id TEXT NOT NULL, model_id TEXT NOT NULL,
    minute INTEGER NOT NULL, predicted TEXT, errored INTEGER NOT NULL,
    fallback INTEGER NOT NULL, paired INTEGER NOT NULL DEFAULT 0,
    joined INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS shadow_predictions_received ON shadow_predictions(received_at);
CREATE TABLE IF NOT EXISTS shadow_agreement(
    test_id TEXT NOT NULL, model_id TEXT NOT NULL, minute INTEGER NOT NULL,
    pairs INTEGER NOT NULL, compared INTEGER NOT NULL, agreements INTEGER NOT NULL,
    numeric_n INTEGER NOT NULL, abs_diff_sum REAL NOT NULL,
    PRIMARY KEY (test_id, model_id, minute)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_outcomes(
    request_id TEXT PRIMARY KEY, outcome_id TEXT NOT NULL, actual TEXT NOT NULL,
    received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS pending_outcomes_received ON pending_outcomes(received_at);
"""

_AB = "test_id <> '' AND variant IN ('champion', 'challenger')"

VIEWS = f"""
CREATE VIEW IF NOT EXISTS variant_minute_stats AS
SELECT test_id, variant, model_id, minute, datetime(minute * 60, 'unixepoch') AS minute_utc,
       SUM(requests) AS requests, SUM(errors) AS errors, SUM(fallbacks) AS fallbacks,
       SUM(cache_hits) AS cache_hits, 1.0 * SUM(errors) / SUM(requests) AS error_rate,
       SUM(latency_sum_ms) / SUM(requests) AS mean_latency_ms,
       SUM(answers) AS answers,
       SUM(answer_latency_sum_ms) / NULLIF(SUM(answers), 0) AS mean_answer_latency_ms
FROM variant_minute GROUP BY test_id, variant, model_id, minute;

CREATE VIEW IF NOT EXISTS variant_quality_stats AS
SELECT test_id, variant, model_id, minute, datetime(minute * 60, 'unixepoch') AS minute_utc,
       scored, unscorable, fallback_outcomes, 1.0 * correct / NULLIF(scored, 0) AS accuracy,
       abs_err_sum / NULLIF(numeric_n, 0) AS mae, sq_err_sum / NULLIF(numeric_n, 0) AS mse
FROM variant_quality;

CREATE VIEW IF NOT EXISTS ab_variant_summary AS
WITH t AS (
    SELECT test_id, variant, SUM(requests) AS requests, SUM(errors) AS errors,
           SUM(fallbacks) AS fallbacks, SUM(cache_hits) AS cache_hits, SUM(latency_sum_ms) AS lat,
           SUM(answers) AS answers, SUM(answer_latency_sum_ms) AS answer_lat
    FROM variant_minute WHERE {_AB} GROUP BY test_id, variant),
q AS (
    SELECT test_id, variant, SUM(scored) AS scored, SUM(correct) AS correct,
           SUM(numeric_n) AS numeric_n, SUM(abs_err_sum) AS abs_sum, SUM(sq_err_sum) AS sq_sum,
           SUM(fallback_outcomes) AS fallback_outcomes
    FROM variant_quality WHERE {_AB} GROUP BY test_id, variant)
SELECT t.test_id, t.variant, t.requests,
       1.0 * t.requests / SUM(t.requests) OVER (PARTITION BY t.test_id) AS share,
       t.errors, 1.0 * t.errors / t.requests AS error_rate, t.fallbacks, t.cache_hits,
       t.lat / t.requests AS mean_latency_all_ms, t.answers,
       t.answer_lat / NULLIF(t.answers, 0) AS mean_latency_ms, COALESCE(q.scored, 0) AS scored,
       COALESCE(q.fallback_outcomes, 0) AS fallback_outcomes,
       1.0 * q.correct / NULLIF(q.scored, 0) AS accuracy,
       q.abs_sum / NULLIF(q.numeric_n, 0) AS mae, q.sq_sum / NULLIF(q.numeric_n, 0) AS mse
FROM t LEFT JOIN q USING (test_id, variant);

CREATE VIEW IF NOT EXISTS ab_variant_latency AS
WITH h AS (
    SELECT test_id, variant, bucket, SUM(count) AS c FROM variant_answer_latency
    WHERE {_AB} GROUP BY test_id, variant, bucket),
c AS (
    SELECT h.test_id, h.variant, h.bucket, h.c, b.lower_ms, b.upper_ms,
           SUM(h.c) OVER (PARTITION BY h.test_id, h.variant ORDER BY h.bucket) AS cum,
           SUM(h.c) OVER (PARTITION BY h.test_id, h.variant) AS n
    FROM h JOIN latency_buckets b USING (bucket)),
qs(q, name) AS (VALUES (0.5, 'p50'), (0.95, 'p95'), (0.99, 'p99')),
pick AS (
    SELECT c.test_id, c.variant, qs.q, qs.name, MIN(c.bucket) AS bucket
    FROM c JOIN qs ON c.cum >= qs.q * c.n GROUP BY c.test_id, c.variant, qs.name),
v AS (
    SELECT p.test_id, p.variant, p.name,
           c.lower_ms + (c.upper_ms - c.lower_ms) * MAX(0.0, p.q * c.n - (c.cum - c.c)) / c.c AS ms
    FROM pick p JOIN c USING (test_id, variant, bucket))
SELECT test_id, variant, MAX(CASE name WHEN 'p50' THEN ms END) AS p50_ms,
       MAX(CASE name WHEN 'p95' THEN ms END) AS p95_ms,
       MAX(CASE name WHEN 'p99' THEN ms END) AS p99_ms
FROM v GROUP BY test_id, variant;

CREATE VIEW IF NOT EXISTS ab_srm AS
WITH o AS (
    SELECT test_id, split_version,
           SUM(CASE variant WHEN 'champion' THEN requests ELSE 0 END) AS a,
           SUM(CASE variant WHEN 'challenger' THEN requests ELSE 0 END) AS b
    FROM variant_minute WHERE {_AB} GROUP BY test_id, split_version),
e AS (
    SELECT o.test_id, o.a, o.b, (o.a + o.b) * (1 - s.traffic_percentage / 100.0) AS ea,
           (o.a + o.b) * s.traffic_percentage / 100.0 AS eb
    FROM o JOIN ab_splits s USING (test_id, split_version)),
x AS (
    SELECT test_id, SUM((a - ea) * (a - ea) / ea + (b - eb) * (b - eb) / eb) AS chi2,
           COUNT(*) AS dof
    FROM e WHERE ea >= 5 AND eb >= 5 GROUP BY test_id)
SELECT test_id, chi2, dof,
       chi2 > CASE dof WHEN 1 THEN 10.828 WHEN 2 THEN 13.816 WHEN 3 THEN 16.266
                       WHEN 4 THEN 18.467 WHEN 5 THEN 20.515 WHEN 6 THEN 22.458
                       WHEN 7 THEN 24.322 WHEN 8 THEN 26.124 ELSE 27.877 + 1.8 * (dof - 9) END
           AS srm_alert
FROM x;

CREATE VIEW IF NOT EXISTS ab_comparison AS
SELECT t.test_id, t.champion_model_id, t.challenger_model_id,
       t.traffic_percentage AS configured_challenger_pct, t.stopped_at IS NULL AS running,
       ch.requests AS champion_requests, cl.requests AS challenger_requests,
       100.0 * cl.share AS observed_challenger_pct, s.chi2 AS srm_chi2, s.dof AS srm_dof,
       s.srm_alert,
       ch.error_rate AS champion_error_rate, cl.error_rate AS challenger_error_rate,
       cl.error_rate - ch.error_rate AS error_rate_diff,
       1.959964 * sqrt(ch.error_rate * (1 - ch.error_rate) / ch.requests
                       + cl.error_rate * (1 - cl.error_rate) / cl.requests)
           AS error_rate_diff_wald_half,
       ch.accuracy AS champion_accuracy, cl.accuracy AS challenger_accuracy,
       cl.accuracy - ch.accuracy AS accuracy_diff,
       1.959964 * sqrt(ch.accuracy * (1 - ch.accuracy) / ch.scored
                       + cl.accuracy * (1 - cl.accuracy) / cl.scored) AS accuracy_diff_wald_half,
       ch.mae AS champion_mae, cl.mae AS challenger_mae, cl.mae - ch.mae AS mae_diff,
       lch.p50_ms AS champion_p50_ms, lch.p95_ms AS champion_p95_ms, lch.p99_ms AS champion_p99_ms,
       lcl.p50_ms AS challenger_p50_ms, lcl.p95_ms AS challenger_p95_ms,
       lcl.p99_ms AS challenger_p99_ms
FROM ab_tests t
LEFT JOIN ab_variant_summary ch ON ch.test_id = t.test_id AND ch.variant = 'champion'
LEFT JOIN ab_variant_summary cl ON cl.test_id = t.test_id AND cl.variant = 'challenger'
LEFT JOIN ab_variant_latency lch ON lch.test_id = t.test_id AND lch.variant = 'champion'
LEFT JOIN ab_variant_latency lcl ON lcl.test_id = t.test_id AND lcl.variant = 'challenger'
LEFT JOIN ab_srm s ON s.test_id = t.test_id;
"""


def ensure_math(db: sqlite3.Connection) -> None:
    """Give ``db`` a ``sqrt`` when its SQLite was built without the math functions (the
    ``ab_comparison`` view uses it)."""
    try:
        db.execute("SELECT sqrt(4)")
    except sqlite3.OperationalError:
        db.create_function(
            "sqrt", 1, lambda x: None if x is None or x < 0 else math.sqrt(x), deterministic=True
        )


def bucket_rows() -> list[tuple[int, float, float]]:
    """Rows of ``latency_buckets``."""
    return [(i, *bucket_bounds(i)) for i in range(N_BUCKETS)]
