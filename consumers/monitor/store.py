"""The monitor's SQLite store: one transaction per batch, positions included.

Every batch of records is written with the consumer positions that follow it in one
transaction, so a crash at any point neither loses nor repeats a count: on restart the
monitor seeks to the stored positions (Kafka's group offsets are not the truth).

The connection is plain ``sqlite3``, used from one worker thread at a time: a batch costs one
hop to that thread, not one per statement.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from consumers.monitor.aggregate import (
    AGREEMENT_COLUMNS,
    MINUTE_COLUMNS,
    QUALITY_COLUMNS,
    AgreementKey,
    Delta,
    OutcomeRow,
    ResultRow,
    VariantKey,
)
from consumers.monitor.errors import SchemaMismatch
from consumers.monitor.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    VIEWS,
    bucket_rows,
    ensure_math,
)
from consumers.monitor.scoring import Scalar, agreement, kind_of, kind_of_pair, score

__all__ = ["Applied", "Batch", "ModelRow", "MonitorStore", "SplitRow", "ABTestRow"]

TopicPartition = tuple[str, int]
_CHUNK = 900  # bound on SQL variables per IN (...) query
_VKEY = ("test_id", "variant", "model_id", "minute")


def _sum_upsert(table: str, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    """INSERT of a row of sums that adds to the existing row with the same key."""
    cols = (*keys, *sums)
    adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in sums)
    marks = ", ".join("?" * len(cols))
    return (
        f"INSERT INTO {table}({', '.join(cols)}) VALUES ({marks}) "
        f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET {adds}"
    )


_ADD_COUNTER = _sum_upsert("monitor_counters", ("name",), ("value",))
_ADD_MINUTE = _sum_upsert(
    "variant_minute",
    ("test_id", "variant", "split_version", "model_id", "minute"),
    MINUTE_COLUMNS,
)
_ADD_LATENCY = _sum_upsert("variant_latency", (*_VKEY, "bucket"), ("count",))
_ADD_ANSWER_LATENCY = _sum_upsert("variant_answer_latency", (*_VKEY, "bucket"), ("count",))
_ADD_ERRORS = _sum_upsert("variant_errors", (*_VKEY, "code"), ("count",))
_ADD_QUALITY = _sum_upsert("variant_quality", _VKEY, QUALITY_COLUMNS)
_ADD_LABELS = _sum_upsert("variant_labels", (*_VKEY, "label"), ("tp", "fp", "fn"))
_ADD_AGREEMENT = _sum_upsert(
    "shadow_agreement", ("test_id", "model_id", "minute"), AGREEMENT_COLUMNS
)


@dataclass(frozen=True, slots=True)
class ABTestRow:
    """An A/B test as configured now (one row per test, upserted)."""

    test_id: str
    champion_model_id: str
    challenger_model_id: str
    traffic_percentage: float
    split_version: int
    routing: str
    started_at: str
    stopped_at: str | None = None
    mode: str = "split"
    """``split`` (the challenger answers its share) or ``shadow`` (it answers mirrored copies)."""


@dataclass(frozen=True, slots=True)
class SplitRow:
    """A version of a test's split: from ``since`` on, ``traffic_percentage`` to the challenger."""

    test_id: str
    split_version: int
    traffic_percentage: float
    since: str


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A registered model's type (decides how outcomes are scored), version and status."""

    model_id: str
    type: str
    version: str
    status: str


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes."""

    results: list[ResultRow] = field(default_factory=list)
    outcomes: list[OutcomeRow] = field(default_factory=list)
    shadows: list[ResultRow] = field(default_factory=list)
    """Shadow results (``predictions.shadow``): mirrored answers, paired with the champion's."""
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    tests: dict[str, ABTestRow] = field(default_factory=dict)
    splits: dict[tuple[str, int], SplitRow] = field(default_factory=dict)
    models: dict[str, ModelRow] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(
            self.results
            or self.outcomes
            or self.shadows
            or self.positions
            or self.tests
            or self.models
            or self.counters
        )


@dataclass(slots=True)
class Applied:
    """What a batch changed: the sums added and the counts of what happened to each record."""

    delta: Delta
    counters: Counter[str]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class MonitorStore:
    """The monitor database. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL: a commit survives a process kill
        self._db.execute("PRAGMA busy_timeout=5000")
        ensure_math(self._db)
        self._init_schema()
        # Outcomes waiting for their result; while there are none, new results skip the lookup.
        self._pending: int = self._db.execute("SELECT COUNT(*) FROM pending_outcomes").fetchone()[0]
        # Whether shadow results may be waiting for their champion's answer, or for their
        # outcome: while not, results and outcomes skip the shadow lookups (a guess that errs
        # only towards looking).
        self._shadows_unpaired = self._any("SELECT 1 FROM shadow_predictions WHERE paired = 0")
        self._shadows_unjoined = self._any("SELECT 1 FROM shadow_predictions WHERE joined = 0")

    def _any(self, sql: str) -> bool:
        return self._db.execute(f"{sql} LIMIT 1").fetchone() is not None

    def _init_schema(self) -> None:
        self._db.executescript(TABLES)  # idempotent (IF NOT EXISTS); executescript commits itself
        with self._tx() as db:
            row = db.execute(
                "SELECT value FROM monitor_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO monitor_meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                db.executemany(
                    "INSERT OR REPLACE INTO latency_buckets VALUES (?, ?, ?)", bucket_rows()
                )
            elif row[0] in MIGRATIONS:
                version, statements = MIGRATIONS[row[0]]
                for statement in statements.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "UPDATE monitor_meta SET value = ? WHERE key = 'schema_version'", (version,)
                )
            elif row[0] != SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"{self.path} has monitor schema {row[0]}, this version writes "
                    f"{SCHEMA_VERSION}; "
                    "move the file aside to start a new one (metrics are rebuilt from what the "
                    "prediction topics still hold)."
                )
        self._db.executescript(VIEWS)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # ------------------------------------------------------------------ reads

    def positions(self) -> dict[TopicPartition, int]:
        """The stored next offset of every partition the monitor has read."""
        rows = self._db.execute("SELECT topic, partition, next_offset FROM checkpoints")
        return {(t, p): o for t, p, o in rows}

    def counters(self) -> dict[str, int]:
        """The totals in ``monitor_counters`` plus the live size of the join window."""
        out = dict(self._db.execute("SELECT name, value FROM monitor_counters").fetchall())
        out["outcomes_pending"] = self._db.execute(
            "SELECT COUNT(*) FROM pending_outcomes"
        ).fetchone()[0]
        return out

    def load_totals(self) -> Delta:
        """Everything counted so far as one delta per (test, variant, model) with minute 0."""
        d = Delta()
        sums = ", ".join(f"SUM({c})" for c in MINUTE_COLUMNS)
        sql = f"SELECT test_id, variant, model_id, {sums} FROM variant_minute GROUP BY 1, 2, 3"
        for t, v, m, *sums in self._db.execute(sql):
            d.minute[(t, v, 0, m, 0)] = list(sums)
        sql = "SELECT test_id, variant, model_id, bucket, SUM(count) FROM variant_latency GROUP BY 1, 2, 3, 4"  # noqa: E501
        for t, v, m, b, c in self._db.execute(sql):
            d.latency[((t, v, m, 0), b)] = c
        sql = "SELECT test_id, variant, model_id, code, SUM(count) FROM variant_errors GROUP BY 1, 2, 3, 4"  # noqa: E501
        for t, v, m, code, c in self._db.execute(sql):
            d.errors[((t, v, m, 0), code)] = c
        return d

    def _select_in(self, sql: str, ids: list[str]) -> Iterator[tuple[Any, ...]]:
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            yield from self._db.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)

    # ------------------------------------------------------------------ writes

    def apply(self, batch: Batch, kinds: Mapping[str, str], now: float) -> Applied:
        """Write one batch and its positions atomically; returns what it added.

        ``kinds`` maps a model id to its registered type (how its outcomes are scored);
        ``now`` (epoch seconds) stamps the join window's rows for expiry.
        """
        delta, counts = Delta(), Counter[str]()
        with self._tx() as db:
            new = self._insert_results(batch.results, now, counts)
            for row in new:
                delta.add_result(row)
            self._join_pending_if_any(new, kinds, delta, counts)
            self._pair_champions(new, kinds, delta, counts)
            self._apply_outcomes(batch.outcomes, kinds, delta, now, counts)
            self._insert_shadows(batch.shadows, kinds, delta, now, counts)
            self._write_delta(delta)
            self._write_registry(batch)
            counts.update(batch.counters)
            db.executemany(_ADD_COUNTER, [(k, v) for k, v in counts.items() if v])
            db.executemany(
                "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT(topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in batch.positions.items()],
            )
        self._pending += counts["outcomes_parked"] - counts["outcomes_unparked"]  # committed now
        return Applied(delta, counts)

    def find_poison(
        self, batch: Batch, kinds: Mapping[str, str], now: float
    ) -> tuple[list[tuple[int, str]], list[tuple[int, str]], list[tuple[int, str]]]:
        """After ``apply(batch)`` raised: which results, outcomes and shadow results of
        ``batch`` cannot be applied, as (index, exception type) lists. Each record is tried
        alone, under a savepoint, in a transaction that is rolled back: nothing is written."""
        bad_results: list[tuple[int, str]] = []
        bad_outcomes: list[tuple[int, str]] = []
        bad_shadows: list[tuple[int, str]] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for i, row in enumerate(batch.results):
                failed = self._try_alone(partial(self._one_result, row, kinds, now=now))
                if failed is not None:
                    bad_results.append((i, failed))
            for i, o in enumerate(batch.outcomes):
                failed = self._try_alone(partial(self._one_outcome, o, kinds, now=now))
                if failed is not None:
                    bad_outcomes.append((i, failed))
            for i, row in enumerate(batch.shadows):
                failed = self._try_alone(partial(self._one_shadow, row, kinds, now=now))
                if failed is not None:
                    bad_shadows.append((i, failed))
        finally:
            db.execute("ROLLBACK")
        return bad_results, bad_outcomes, bad_shadows

    def _one_result(
        self,
        row: ResultRow,
        kinds: Mapping[str, str],
        delta: Delta,
        counts: Counter[str],
        *,
        now: float,
    ) -> None:
        new = self._insert_results([row], now, counts)
        for r in new:
            delta.add_result(r)
        self._join_pending_if_any(new, kinds, delta, counts)
        self._pair_champions(new, kinds, delta, counts)

    def _one_shadow(
        self,
        row: ResultRow,
        kinds: Mapping[str, str],
        delta: Delta,
        counts: Counter[str],
        *,
        now: float,
    ) -> None:
        self._insert_shadows([row], kinds, delta, now, counts)

    def _one_outcome(
        self,
        outcome: OutcomeRow,
        kinds: Mapping[str, str],
        delta: Delta,
        counts: Counter[str],
        *,
        now: float,
    ) -> None:
        self._apply_outcomes([outcome], kinds, delta, now, counts)

    def _try_alone(self, step: Callable[[Delta, Counter[str]], None]) -> str | None:
        """Run ``step`` and write its sums under a savepoint; the exception's type name if it
        raised (the savepoint is then rolled back), else None."""
        db = self._db
        db.execute("SAVEPOINT one_record")
        try:
            delta, counts = Delta(), Counter[str]()
            step(delta, counts)
            self._write_delta(delta)
            db.executemany(_ADD_COUNTER, [(k, v) for k, v in counts.items() if v])
        except Exception as exc:  # noqa: BLE001 - finding the record that raises is the point
            db.execute("ROLLBACK TO one_record")
            db.execute("RELEASE one_record")
            return type(exc).__name__
        db.execute("RELEASE one_record")
        return None

    def _insert_results(
        self, results: list[ResultRow], now: float, counts: Counter[str]
    ) -> list[ResultRow]:
        if not results:
            return []
        ids = list({r.request_id for r in results})
        seen = {
            row[0]
            for row in self._select_in(
                "SELECT request_id FROM predictions WHERE request_id IN ({marks})", ids
            )
        }
        new: list[ResultRow] = []
        for r in results:
            if r.request_id in seen:
                counts["duplicate_results"] += 1  # a redelivered result: counted once
                continue
            seen.add(r.request_id)
            new.append(r)
        self._db.executemany(
            "INSERT INTO predictions(request_id, test_id, variant, model_id, minute, predicted, "
            "errored, joined, received_at, fallback) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            [
                (
                    r.request_id,
                    r.test_id,
                    r.variant,
                    r.model_id,
                    r.minute,
                    _json(r.predicted),
                    r.error_code is not None,
                    now,
                    r.fallback_answer,
                )
                for r in new
            ],
        )
        counts["results"] += len(new)
        return new

    def _join_pending_if_any(
        self, new: list[ResultRow], kinds: Mapping[str, str], delta: Delta, counts: Counter[str]
    ) -> None:
        if self._pending > 0:
            self._join_pending(new, kinds, delta, counts)

    def _join_pending(
        self, new: list[ResultRow], kinds: Mapping[str, str], delta: Delta, counts: Counter[str]
    ) -> None:
        if not new:
            return
        by_id = {r.request_id: r for r in new}
        sql = "SELECT request_id, actual FROM pending_outcomes WHERE request_id IN ({marks})"
        found = list(self._select_in(sql, list(by_id)))
        for request_id, actual_json in found:
            r = by_id[request_id]
            if r.fallback_answer:
                delta.add_fallback_outcome(r.key)
                continue
            _score_into(
                delta,
                r.key,
                r.model_id,
                None if r.error_code else r.predicted,
                orjson.loads(actual_json),
                kinds,
            )
        self._db.executemany(
            "UPDATE predictions SET joined = 1, actual = ? WHERE request_id = ?",
            [(a, i) for i, a in found],
        )
        self._db.executemany(
            "DELETE FROM pending_outcomes WHERE request_id = ?", [(i,) for i, _ in found]
        )
        counts["outcomes_joined"] += len(found)
        counts["outcomes_unparked"] += len(found)

    def _apply_outcomes(
        self,
        outcomes: list[OutcomeRow],
        kinds: Mapping[str, str],
        delta: Delta,
        now: float,
        counts: Counter[str],
    ) -> None:
        if not outcomes:
            return
        counts["outcomes"] += len(outcomes)
        ids = list({o.request_id for o in outcomes})
        sql = (
            "SELECT request_id, test_id, variant, model_id, minute, predicted, errored, joined, "
            "fallback FROM predictions WHERE request_id IN ({marks})"
        )
        preds = {row[0]: row for row in self._select_in(sql, ids)}
        sql = "SELECT request_id FROM pending_outcomes WHERE request_id IN ({marks})"
        handled = {row[0] for row in self._select_in(sql, ids)} | {
            i for i, p in preds.items() if p[7]
        }
        joined: list[tuple[str, str]] = []
        pending: list[tuple[str, str, str, float]] = []
        first: list[OutcomeRow] = []
        for o in outcomes:
            if o.request_id in handled:
                counts["duplicate_outcomes"] += 1  # the first outcome of a request wins
                continue
            handled.add(o.request_id)
            first.append(o)
            p = preds.get(o.request_id)
            if p is None:
                pending.append((o.request_id, o.outcome_id, orjson.dumps(o.actual).decode(), now))
                continue
            _, test_id, variant, model_id, minute, predicted, errored, _, fallback = p
            # The outcome is kept with the result: a shadow result arriving later is scored
            # against it.
            joined.append((orjson.dumps(o.actual).decode(), o.request_id))
            if fallback:  # another model's answer: never scored for this variant
                delta.add_fallback_outcome((test_id, variant, model_id, minute))
                continue
            predicted_value = None if errored or predicted is None else orjson.loads(predicted)
            _score_into(
                delta,
                (test_id, variant, model_id, minute),
                model_id,
                predicted_value,
                o.actual,
                kinds,
            )
        self._db.executemany(
            "UPDATE predictions SET joined = 1, actual = ? WHERE request_id = ?", joined
        )
        self._db.executemany("INSERT INTO pending_outcomes VALUES (?, ?, ?, ?)", pending)
        counts["outcomes_joined"] += len(joined)
        counts["outcomes_parked"] += len(pending)
        if self._shadows_unjoined:
            self._score_shadows({o.request_id: o.actual for o in first}, kinds, delta, counts)

    # ------------------------------------------------------------------ shadow tests

    def _insert_shadows(
        self,
        shadows: list[ResultRow],
        kinds: Mapping[str, str],
        delta: Delta,
        now: float,
        counts: Counter[str],
    ) -> None:
        """Count new shadow results (deduplicated by request id), pair each with the champion's
        answer to its request if already seen, and score it if its outcome is already known
        (kept with the champion's result, or waiting in ``pending_outcomes``)."""
        new = self._new_shadows(shadows, counts)
        if not new:
            return
        self._db.executemany(
            "INSERT INTO shadow_predictions(request_id, test_id, model_id, minute, predicted, "
            "errored, fallback, paired, joined, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
            [
                (
                    r.request_id,
                    r.test_id,
                    r.model_id,
                    r.minute,
                    _json(r.predicted),
                    r.error_code is not None,
                    r.fallback_answer,
                    now,
                )
                for r in new
            ],
        )
        self._shadows_unpaired = self._shadows_unjoined = True
        for r in new:
            delta.add_result(r)
        counts["shadow_results"] += len(new)
        by_id = {r.request_id: r for r in new}
        actuals = self._pair_shadows(by_id, kinds, delta, counts)
        # An outcome parked in this very batch counts: the pending count is updated on commit.
        if self._pending + counts["outcomes_parked"] - counts["outcomes_unparked"] > 0:
            rest = [i for i in by_id if i not in actuals]
            sql = "SELECT request_id, actual FROM pending_outcomes WHERE request_id IN ({marks})"
            for request_id, actual in self._select_in(sql, rest):
                actuals[request_id] = orjson.loads(actual)
        self._score_shadows(actuals, kinds, delta, counts)

    def _new_shadows(self, shadows: list[ResultRow], counts: Counter[str]) -> list[ResultRow]:
        """The shadow results not seen yet (a redelivered one is counted once)."""
        if not shadows:
            return []
        ids = list({r.request_id for r in shadows})
        sql = "SELECT request_id FROM shadow_predictions WHERE request_id IN ({marks})"
        seen = {row[0] for row in self._select_in(sql, ids)}
        new: list[ResultRow] = []
        for r in shadows:
            if r.request_id in seen:
                counts["duplicate_shadow_results"] += 1
                continue
            seen.add(r.request_id)
            new.append(r)
        return new

    def _pair_shadows(
        self,
        by_id: dict[str, ResultRow],
        kinds: Mapping[str, str],
        delta: Delta,
        counts: Counter[str],
    ) -> dict[str, Scalar]:
        """Pair new shadow results with the answers already seen to their requests; returns
        the outcomes already joined to those answers."""
        sql = (
            "SELECT request_id, model_id, predicted, errored, joined, actual FROM predictions "
            "WHERE request_id IN ({marks})"
        )
        actuals: dict[str, Scalar] = {}
        paired: list[tuple[str]] = []
        for request_id, champion_id, predicted, errored, joined, actual in list(
            self._select_in(sql, list(by_id))
        ):
            r = by_id[request_id]
            mine = None if r.error_code is not None or r.fallback else r.predicted
            champion = None if errored or predicted is None else orjson.loads(predicted)
            _pair(delta, (r.test_id, r.model_id, r.minute), mine, champion_id, champion, kinds)
            paired.append((request_id,))
            if joined and actual is not None:
                actuals[request_id] = orjson.loads(actual)
        self._db.executemany(
            "UPDATE shadow_predictions SET paired = 1 WHERE request_id = ?", paired
        )
        counts["shadow_pairs"] += len(paired)
        return actuals

    def _pair_champions(
        self, new: list[ResultRow], kinds: Mapping[str, str], delta: Delta, counts: Counter[str]
    ) -> None:
        """Pair new results with the shadow results already waiting for them (a mirrored
        copy may be answered before the champion's answer is read)."""
        if not self._shadows_unpaired or not new:
            return
        by_id = {r.request_id: r for r in new if r.test_id}
        if not by_id:
            return
        sql = (
            "SELECT request_id, test_id, model_id, minute, predicted, errored, fallback "
            "FROM shadow_predictions WHERE paired = 0 AND request_id IN ({marks})"
        )
        paired: list[tuple[str]] = []
        for request_id, test_id, model_id, minute, predicted, errored, fallback in list(
            self._select_in(sql, list(by_id))
        ):
            c = by_id[request_id]
            mine = None if errored or fallback or predicted is None else orjson.loads(predicted)
            champion = None if c.error_code is not None else c.predicted
            _pair(delta, (test_id, model_id, minute), mine, c.model_id, champion, kinds)
            paired.append((request_id,))
        self._db.executemany(
            "UPDATE shadow_predictions SET paired = 1 WHERE request_id = ?", paired
        )
        counts["shadow_pairs"] += len(paired)

    def _score_shadows(
        self,
        actuals: Mapping[str, Scalar],
        kinds: Mapping[str, str],
        delta: Delta,
        counts: Counter[str],
    ) -> None:
        """Score the shadow results of these requests not scored yet against their outcome."""
        if not actuals:
            return
        sql = (
            "SELECT request_id, test_id, model_id, minute, predicted, errored, fallback "
            "FROM shadow_predictions WHERE joined = 0 AND request_id IN ({marks})"
        )
        joined: list[tuple[str]] = []
        for request_id, test_id, model_id, minute, predicted, errored, fallback in list(
            self._select_in(sql, list(actuals))
        ):
            key = (test_id, "shadow", model_id, minute)
            joined.append((request_id,))
            if fallback:
                delta.add_fallback_outcome(key)
                continue
            value = None if errored or predicted is None else orjson.loads(predicted)
            _score_into(delta, key, model_id, value, actuals[request_id], kinds)
        self._db.executemany(
            "UPDATE shadow_predictions SET joined = 1 WHERE request_id = ?", joined
        )
        counts["shadow_outcomes_joined"] += len(joined)

    def _write_delta(self, d: Delta) -> None:
        db = self._db
        db.executemany(_ADD_MINUTE, [(*k, *v) for k, v in d.minute.items()])
        db.executemany(_ADD_LATENCY, [(*k, b, c) for (k, b), c in d.latency.items()])
        db.executemany(_ADD_ANSWER_LATENCY, [(*k, b, c) for (k, b), c in d.answer_latency.items()])
        db.executemany(_ADD_ERRORS, [(*k, code, c) for (k, code), c in d.errors.items()])
        db.executemany(_ADD_QUALITY, [(*k, *v) for k, v in d.quality.items()])
        db.executemany(_ADD_LABELS, [(*k, label, *v) for (k, label), v in d.labels.items()])
        db.executemany(_ADD_AGREEMENT, [(*k, *v) for k, v in d.agreement.items()])

    def _write_registry(self, batch: Batch) -> None:
        db = self._db
        db.executemany(
            "INSERT INTO models VALUES (?, ?, ?, ?) ON CONFLICT(model_id) DO UPDATE SET "
            "type = excluded.type, version = excluded.version, status = excluded.status",
            [(m.model_id, m.type, m.version, m.status) for m in batch.models.values()],
        )
        db.executemany(
            "INSERT INTO ab_tests(test_id, champion_model_id, challenger_model_id, "
            "traffic_percentage, split_version, routing, started_at, stopped_at, mode) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(test_id) DO UPDATE SET "
            "traffic_percentage = excluded.traffic_percentage, "
            "split_version = excluded.split_version, routing = excluded.routing, "
            "stopped_at = excluded.stopped_at, mode = excluded.mode",
            [
                (
                    t.test_id,
                    t.champion_model_id,
                    t.challenger_model_id,
                    t.traffic_percentage,
                    t.split_version,
                    t.routing,
                    t.started_at,
                    t.stopped_at,
                    t.mode,
                )
                for t in batch.tests.values()
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO ab_splits VALUES (?, ?, ?, ?)",
            [
                (s.test_id, s.split_version, s.traffic_percentage, s.since)
                for s in batch.splits.values()
            ],
        )

    def reset_positions(self, resets: Iterable[tuple[str, int, int, int | None]]) -> None:
        """Forget the positions of partitions whose log came back shorter (metrics are kept).

        Each item is (topic, partition, stored offset, high watermark seen).
        """
        resets = list(resets)
        with self._tx() as db:
            db.executemany(
                "DELETE FROM checkpoints WHERE topic = ? AND partition = ?",
                [(t, p) for t, p, _, _ in resets],
            )
            at = _now_iso()
            db.executemany(
                "INSERT INTO log_resets(topic, partition, stored_offset, high_watermark, reset_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(t, p, o, hw, at) for t, p, o, hw in resets],
            )
            db.execute(_ADD_COUNTER, ("log_resets", len(resets)))

    def expire(self, now: float, outcome_ttl_s: float, prediction_ttl_s: float) -> tuple[int, int]:
        """Drop outcomes that waited longer than their TTL for a result (counted as expired) and
        results older than the join window; returns (expired outcomes, dropped results)."""
        with self._tx() as db:
            expired = db.execute(
                "DELETE FROM pending_outcomes WHERE received_at < ?", (now - outcome_ttl_s,)
            ).rowcount
            dropped = db.execute(
                "DELETE FROM predictions WHERE received_at < ?", (now - prediction_ttl_s,)
            ).rowcount
            # Shadow results wait as long as results do for their pair and their outcome.
            db.execute(
                "DELETE FROM shadow_predictions WHERE received_at < ?", (now - prediction_ttl_s,)
            )
            if expired:
                db.execute(_ADD_COUNTER, ("outcomes_expired", expired))
        self._pending -= expired
        self._shadows_unpaired = self._any("SELECT 1 FROM shadow_predictions WHERE paired = 0")
        self._shadows_unjoined = self._any("SELECT 1 FROM shadow_predictions WHERE joined = 0")
        return expired, dropped


def _score_into(
    delta: Delta,
    key: VariantKey,
    model_id: str,
    predicted: Scalar | None,
    actual: Scalar,
    kinds: Mapping[str, str],
) -> None:
    kind = kind_of(kinds.get(model_id), actual)
    delta.add_score(key, score(kind, predicted, actual))


def _json(value: Scalar | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _pair(
    delta: Delta,
    key: AgreementKey,
    shadow: Scalar | None,
    champion_id: str,
    champion: Scalar | None,
    kinds: Mapping[str, str],
) -> None:
    """Count a shadow's prediction (None: it gave none) against the champion's answer."""
    found = None
    if champion is not None and shadow is not None:
        model_type = kinds.get(champion_id) or kinds.get(key[1])
        found = agreement(kind_of_pair(model_type, champion, shadow), champion, shadow)
    delta.add_pair(key, found)
