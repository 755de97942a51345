"""Folding a batch of ``registry.events`` records into the rows of one transaction.

Pure (no I/O): ``fold_batch(state, records)`` folds the records into the in-memory
``RegistryState`` with ``registry.core.replay.fold_records`` (the fold every reader shares)
and derives the table rows from what each event changed, (before, after) per model. The
projection is therefore a function of the log alone: any batching of the same records
yields the same tables. ``fold_batch(..., fast=False)`` decodes every record through the
pydantic models instead of the strict fast check (the tests compare the two).

Invariants:
- an event whose revision is not its model's next is *not* folded in; it is kept in
  ``events`` with ``applied = 0`` and reported in ``projection_errors``;
- an unreadable record is reported (digest only, never its bytes) and handed back for the
  DLQ; the batch goes on;
- ``models`` gets one upsert per touched model per batch, from the final in-memory state.
"""

from __future__ import annotations

import base64
import gc
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from registry.core.chain import Chain
from registry.core.replay import RecordLike, Unfolded, fold_records
from registry.core.state import Change, Fact, ModelState, RegistryState, dumps, iso_text

__all__ = ["BatchRows", "fold_batch", "headers_json", "model_row"]

_HEADERS_CACHE: dict[Any, str] = {}  # headers tuple -> its JSON


def headers_json(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """Headers as JSON ``[[name, base64 value], ...]`` (exact bytes, for a verbatim restore)."""
    key = tuple(headers or ())
    text = _HEADERS_CACHE.get(key)
    if text is None:
        text = orjson.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in key]).decode()
        if len(_HEADERS_CACHE) < 1024:  # almost always just ("type", <event type>)
            _HEADERS_CACHE[key] = text
    return text


def _release(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a version that was validated already."""
    major, minor, patch = version.split("+", 1)[0].split("-", 1)[0].split(".")
    return int(major), int(minor), int(patch)


_NO_AB = (None, None, None, None, None, None)


def model_row(state: ModelState, partition: int, offset: int) -> tuple[Any, ...]:
    """The ``models`` row of a state, in column order."""
    c = state.wire
    trained = c.get("lastTrained")
    return (
        c["id"],
        c["name"],
        c["version"],
        c["type"],
        c["provider"],
        c["status"],
        c["description"],
        c.get("endpoint"),
        None if trained is None else iso_text(trained),
        state.config_text(),
        state.metrics_text(),
        state.revision,
        state.registered_at,
        state.updated_at,
        *(state.ab_test[:6] if state.ab_test else _NO_AB),
        partition,
        offset,
        dumps(list(state.aliases)) if state.aliases else None,
        state.served_by,
        state.replaces,
        state.ab_test.mode if state.ab_test else None,
        state.ab_test.guardrails if state.ab_test else None,
    )


@dataclass(slots=True)
class BatchRows:
    """Everything one transaction writes, in execution order per table."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    status_history: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    version_metrics: dict[tuple[str, str], dict[str, float] | None] = field(default_factory=dict)
    superseded: list[tuple[str, str, str]] = field(default_factory=list)
    ab_started: list[tuple[Any, ...]] = field(default_factory=list)
    ab_splits: list[tuple[Any, ...]] = field(default_factory=list)
    ab_updates: list[tuple[Any, ...]] = field(default_factory=list)
    models: dict[str, tuple[ModelState, int, int]] = field(default_factory=dict)
    errors: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[tuple[Any, str]] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    registry_revision: int | None = None
    applied: int = 0
    records: int = 0
    careful: int = 0

    def model_rows(self) -> list[tuple[Any, ...]]:
        """The ``models`` upserts, one per touched model."""
        return [model_row(s, p, o) for s, p, o in self.models.values()]

    def version_metric_rows(self) -> list[tuple[str | None, str, str]]:
        return [
            (None if m is None else dumps(m), mid, ver)
            for (mid, ver), m in self.version_metrics.items()
        ]

    # ------------------------------------------------------------ the fold's callbacks

    def applied_event(self, record: RecordLike, fact: Fact, changes: list[Change]) -> None:
        """An event folded in: its audit row, and the rows of what it changed."""
        self.events.append(_event_row(fact, record, 1))
        if len(changes) == 1:  # one model's event (the registry-wide clear is the other kind)
            before, after = changes[0]
            if before is not None:
                # The commonest change (metrics, or only the revision), recorded without
                # ``_diff``'s walk over every table.
                config, b_config = after.wire, before.wire
                if (
                    after.ab_test is before.ab_test
                    and after.aliases is before.aliases
                    and config["status"] == b_config["status"]
                    and config["version"] == b_config["version"]
                ):
                    self.models[config["id"]] = (after, record.partition, record.offset)
                    metrics, b_metrics = config.get("metrics"), b_config.get("metrics")
                    if metrics is not b_metrics and metrics != b_metrics:
                        self.version_metrics[(config["id"], config["version"])] = metrics
                    return
            _diff(before, after, fact, record, self)
            return
        if fact.type == "RegistryCleared":
            self.registry_revision = fact.revision
        for before, after in changes:
            _diff(before, after, fact, record, self)

    def unfolded(self, bad: Unfolded) -> None:
        """The projection's bad-record policy: ``projection_errors``, and the DLQ."""
        record = bad.record
        value = record.value
        if bad.kind == "revision_gap" and bad.fact is not None:
            f = bad.fact
            self.events.append(_event_row(f, record, 0))
            self.errors.append(
                _error_row(record, "revision_gap", bad.reason, f.model_id, f.type, f.id, f.revision)
            )
            return
        if bad.kind == "broken_link" and bad.fact is not None:
            # Not believed and not in ``events``: the chain's tip stays on the last believed
            # event. Only the digest is kept; the record stays in the log for the audit.
            f = bad.fact
            error = _error_row(record, "broken_link", bad.reason, f.model_id, f.type, f.id, None)
            self.errors.append((*error[:11], hashlib.sha256(value or b"").hexdigest(), error[12]))
            return
        error = _error_row(record, "undecodable", bad.reason, None, None, bad.message_id, None)
        self.errors.append(error)
        self.dead_letters.append((record, bad.reason))
        if value is not None:  # the digest, never the bytes: a stray record may hold anything
            self.errors[-1] = (*error[:11], hashlib.sha256(value).hexdigest(), len(value))


def fold_batch(
    state: RegistryState,
    records: Iterable[RecordLike],
    *,
    fast: bool = True,
    chain: Chain | None = None,
) -> BatchRows:
    """Apply ``records`` (in log order) to ``state`` and return the rows to write. With
    ``chain``, a record whose hash-chain link does not match is refused (not believed)."""
    rows = BatchRows()
    records = records if isinstance(records, list) else list(records)
    # The fold allocates many short-lived objects and no reference cycles: the cyclic
    # collector would only rescan the (large, long-lived) state over and over meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        counts = fold_records(
            records,
            state,
            on_bad=rows.unfolded,
            on_applied=rows.applied_event,
            fast=fast,
            chain=chain,
        )
    finally:
        if enabled:
            gc.enable()
    positions = rows.positions
    for record in reversed(records):  # the last record of each partition
        if record.partition not in positions:
            positions[record.partition] = record.offset + 1
    rows.records = len(records)
    rows.applied = counts.applied
    rows.careful = counts.careful
    return rows


# --------------------------------------------------------------------------- rows


def _event_row(f: Fact, record: RecordLike, applied: int) -> tuple[Any, ...]:
    value = record.value or b""
    headers = record.headers
    text = _HEADERS_CACHE.get(headers) if type(headers) is tuple else None
    # the first nine fields of a fact are the events columns after (partition, offset); the
    # value stays bytes: the writer decodes it (valid UTF-8: it parsed as JSON)
    return (
        (record.partition, record.offset)
        + f[:9]
        + (applied, record.timestamp, record.key, text or headers_json(headers), value)
    )


def _error_row(
    record: RecordLike,
    kind: str,
    reason: str,
    model_id: str | None,
    event_type: str | None,
    event_id: str | None,
    revision: int | None,
) -> tuple[Any, ...]:
    return (
        record.partition,
        record.offset,
        kind,
        reason,
        model_id,
        event_type,
        event_id,
        revision,
        record.timestamp,
        record.key,
        headers_json(record.headers),
        None,
        len(record.value or b""),
    )


def _diff(  # noqa: C901 - one comparison per table
    before: ModelState | None, after: ModelState, f: Fact, record: RecordLike, rows: BatchRows
) -> None:
    """Derive history rows from what the event changed in one model."""
    p, o = record.partition, record.offset
    config = after.wire
    mid, status, version = config["id"], config["status"], config["version"]
    at, actor, kind = f.at, f.actor, f.type
    rows.models[mid] = (after, p, o)
    if before is None:
        b_config = None
        b_status = b_version = old = None
    else:
        b_config = before.wire
        b_status, b_version, old = b_config["status"], b_config["version"], before.ab_test
    if b_status != status:
        rows.status_history.append(
            (mid, after.revision, b_status, status, at, actor, f.reason, kind, f.id, p, o)
        )
    if b_version != version or kind == "ModelRegistered":
        if b_config is not None and b_version != version:
            rows.superseded.append((at, mid, str(b_version)))
        major, minor, patch = _release(version)
        rows.versions.append(
            (
                mid,
                version,
                major,
                minor,
                patch,
                status,
                after.config_text(),
                after.metrics_text(),
                at,
                actor,
                after.revision,
                p,
                o,
            )
        )
        rows.version_metrics.pop((mid, version), None)
    elif b_config is not None:
        metrics, b_metrics = config.get("metrics"), b_config.get("metrics")
        if metrics is not b_metrics and metrics != b_metrics:
            rows.version_metrics[(mid, version)] = metrics
    new = after.ab_test
    if old is new:
        return
    if old is not None and (new is None or new.test_id != old.test_id):
        reason = f.reason if kind in ("ABTestStopped", "ChallengerPromoted") else None
        reason = reason or f"ended by {kind}"
        rows.ab_updates.append(
            (
                "promoted" if kind == "ChallengerPromoted" else "stopped",
                at,
                actor,
                reason,
                o,
                old.traffic_percentage,
                old.split_version,
                old.test_id,
            )
        )
    if new is not None and (old is None or new.test_id != old.test_id):
        rows.ab_started.append(
            (
                new.test_id,
                mid,
                new.champion_model_id,
                new.routing,
                new.traffic_percentage,
                new.split_version,
                "running",
                new.started_at,
                actor,
                o,
                p,
                new.mode,
                new.guardrails,
            )
        )
        rows.ab_splits.append(
            (new.test_id, new.split_version, new.traffic_percentage, None, at, actor, p, o)
        )
    elif new is not None and old is not None and new.split_version != old.split_version:
        rows.ab_splits.append(
            (
                new.test_id,
                new.split_version,
                new.traffic_percentage,
                old.traffic_percentage,
                at,
                actor,
                p,
                o,
            )
        )
        rows.ab_updates.append(
            (
                "running",
                None,
                None,
                None,
                None,
                new.traffic_percentage,
                new.split_version,
                new.test_id,
            )
        )
