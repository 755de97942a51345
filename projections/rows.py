"""Folding a batch of ``registry.events`` records into the rows of one transaction.

Pure (no I/O): ``fold_batch(state, records)`` applies each readable event to the in-memory
``RegistryState`` with the domain's own ``evolve`` and derives the table rows from the
difference between a model's state before and after the event. The projection is therefore
a function of the log alone: any batching of the same records yields the same tables.

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
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from registry.codec import decode_event
from registry.domain.errors import DecodeError
from registry.domain.messages import (
    ABTestStopped,
    EventBase,
    ModelRegistered,
    ModelStatusChanged,
    ModelUnregistered,
    RegistryCleared,
)
from registry.domain.rules import ModelState, RegistryState, RevisionGap
from registry.domain.types import Metrics, ModelConfig

__all__ = [
    "BatchRows",
    "RecordLike",
    "config_json",
    "fold_batch",
    "headers_json",
    "iso",
    "model_row",
]


class RecordLike(Protocol):
    """The parts of a Kafka record the projection reads (aiokafka's ``ConsumerRecord``)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def iso(value: datetime | None) -> str | None:
    """Fixed-width UTC ISO-8601 text (microseconds, ``+00:00``): text order is time order."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # envelopes are normalised to UTC already: skip the conversion
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


_ISO_MEMO: dict[datetime, str] = {}


def _iso_memo(value: datetime) -> str:
    """``iso`` for times formatted again and again (a model's registration and update times
    are written with every batch that touches it): formatting costs more than a lookup."""
    text = _ISO_MEMO.get(value)
    if text is None:
        if len(_ISO_MEMO) > 100_000:
            _ISO_MEMO.clear()
        text = _ISO_MEMO[value] = iso(value) or ""
    return text


_HEADERS_CACHE: dict[tuple[tuple[str, bytes], ...], str] = {}


def headers_json(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """Headers as JSON ``[[name, base64 value], ...]`` (exact bytes, for a verbatim restore)."""
    key = tuple(headers or ())
    text = _HEADERS_CACHE.get(key)
    if text is None:
        text = orjson.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in key]).decode()
        if len(_HEADERS_CACHE) < 1024:  # almost always just ("type", <event type>)
            _HEADERS_CACHE[key] = text
    return text


def config_json(config: ModelConfig) -> str:
    """The wire form of a config. Only references can be in it: ``ModelConfig`` refuses secrets."""
    return config.model_dump_json(by_alias=True, exclude_none=True)


def _metrics_json(metrics: Metrics | None) -> str | None:
    if metrics is None:
        return None
    return metrics.model_dump_json(by_alias=True, exclude_none=True)


def _release(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a version ``ModelConfig`` has validated already."""
    major, minor, patch = version.split("+", 1)[0].split("-", 1)[0].split(".")
    return int(major), int(minor), int(patch)


def model_row(
    state: ModelState, partition: int, offset: int, config_text: str | None = None
) -> tuple[Any, ...]:
    """The ``models`` row of a state, in column order."""
    cfg, ab = state.config, state.ab_test
    return (
        cfg.id,
        cfg.name,
        cfg.version,
        str(cfg.type),
        str(cfg.provider),
        str(cfg.status),
        cfg.description,
        cfg.endpoint,
        iso(cfg.last_trained),
        config_text if config_text is not None else config_json(cfg),
        _metrics_json(cfg.metrics),
        state.revision,
        _iso_memo(state.registered_at),
        _iso_memo(state.updated_at),
        ab.test_id if ab else None,
        ab.champion_model_id if ab else None,
        ab.traffic_percentage if ab else None,
        ab.routing if ab else None,
        ab.split_version if ab else None,
        _iso_memo(ab.started_at) if ab else None,
        partition,
        offset,
    )


@dataclass(slots=True)
class BatchRows:
    """Everything one transaction writes, in execution order per table."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    status_history: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    version_metrics: dict[tuple[str, str], Metrics | None] = field(default_factory=dict)
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

    def model_rows(self) -> list[tuple[Any, ...]]:
        """The ``models`` upserts, one per touched model."""
        return [model_row(s, p, o) for s, p, o in self.models.values()]

    def version_metric_rows(self) -> list[tuple[str | None, str, str]]:
        return [(_metrics_json(m), mid, ver) for (mid, ver), m in self.version_metrics.items()]


def fold_batch(state: RegistryState, records: Iterable[RecordLike]) -> BatchRows:
    """Apply ``records`` (in log order) to ``state`` and return the rows to write."""
    # The fold allocates many short-lived objects and no reference cycles: the cyclic
    # collector would only rescan the (large, long-lived) state over and over meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _fold(state, records)
    finally:
        if enabled:
            gc.enable()


def _fold(state: RegistryState, records: Iterable[RecordLike]) -> BatchRows:
    rows = BatchRows()
    for record in records:
        rows.records += 1
        rows.positions[record.partition] = record.offset + 1
        try:
            event = decode_event(record.value)
        except DecodeError as exc:
            _undecodable(rows, record, exc)
            continue
        if isinstance(event, RegistryCleared):
            _fold_clear(state, event, record, rows)
        else:
            _fold_model_event(state, event, record, rows)
    return rows


def _event_row(
    event: EventBase, record: RecordLike, applied: int, at: str | None
) -> tuple[Any, ...]:
    value = record.value or b""
    return (
        record.partition,
        record.offset,
        event.id,
        event.type,  # type: ignore[attr-defined]
        event.model_id,
        event.revision,
        event.actor,
        at,
        event.correlation_id,
        event.causation_id,
        event.schema_version,
        applied,
        record.timestamp,
        record.key,
        headers_json(record.headers),
        value.decode("utf-8"),  # valid UTF-8: it parsed as JSON
    )


def _undecodable(rows: BatchRows, record: RecordLike, exc: DecodeError) -> None:
    value = record.value or b""
    rows.errors.append(
        (
            record.partition,
            record.offset,
            "undecodable",
            exc.reason,
            None,
            None,
            exc.message_id,
            None,
            record.timestamp,
            record.key,
            headers_json(record.headers),
            hashlib.sha256(value).hexdigest() if record.value is not None else None,
            len(value),
        )
    )
    rows.dead_letters.append((record, exc.reason))


def _gap(rows: BatchRows, event: EventBase, record: RecordLike, gap: RevisionGap) -> None:
    rows.events.append(_event_row(event, record, 0, iso(event.occurred_at)))
    rows.errors.append(
        (
            record.partition,
            record.offset,
            "revision_gap",
            f"{gap}; not applied",
            event.model_id,
            event.type,  # type: ignore[attr-defined]
            event.id,
            event.revision,
            record.timestamp,
            record.key,
            headers_json(record.headers),
            None,
            len(record.value or b""),
        )
    )


def _fold_model_event(
    state: RegistryState, event: EventBase, record: RecordLike, rows: BatchRows
) -> None:
    before = state.models.get(event.model_id)
    try:
        state.apply(event)
    except RevisionGap as gap:
        _gap(rows, event, record, gap)
        return
    after = state.models[event.model_id]
    at = _iso_memo(event.occurred_at)  # its model's updated_at: formatted again with the model row
    rows.events.append(_event_row(event, record, 1, at))
    rows.applied += 1
    _diff(before, after, event, record, rows, at)


def _fold_clear(
    state: RegistryState, event: RegistryCleared, record: RecordLike, rows: BatchRows
) -> None:
    live = {mid: s for mid, s in state.models.items() if s.live}
    try:
        state.apply(event)
    except RevisionGap as gap:
        _gap(rows, event, record, gap)
        return
    at = iso(event.occurred_at)
    rows.events.append(_event_row(event, record, 1, at))
    rows.applied += 1
    rows.registry_revision = state.registry_revision
    for mid in sorted(live):
        _diff(live[mid], state.models[mid], event, record, rows, at)


def _reason(event: EventBase) -> str | None:
    if isinstance(event, ModelStatusChanged | ModelUnregistered | RegistryCleared | ABTestStopped):
        return event.payload.reason
    return None


def _diff(
    before: ModelState | None,
    after: ModelState,
    event: EventBase,
    record: RecordLike,
    rows: BatchRows,
    at: str | None,
) -> None:
    """Derive history rows from what the event changed in one model."""
    p, o = record.partition, record.offset
    mid = after.model_id
    kind = event.type  # type: ignore[attr-defined]
    rows.models[mid] = (after, p, o)
    b_status = before.status if before is not None else None
    if b_status is not after.status:
        rows.status_history.append(
            (
                mid,
                after.revision,
                b_status and str(b_status),
                str(after.status),
                at,
                event.actor,
                _reason(event),
                kind,
                event.id,
                p,
                o,
            )
        )
    _diff_version(before, after, event, at, rows, p, o)
    _diff_ab(before, after, event, at, rows, p, o)


def _diff_version(
    before: ModelState | None,
    after: ModelState,
    event: EventBase,
    at: str | None,
    rows: BatchRows,
    p: int,
    o: int,
) -> None:
    mid, cfg = after.model_id, after.config
    fresh = isinstance(event, ModelRegistered)
    if fresh or before is None or before.config.version != cfg.version:
        if before is not None and before.config.version != cfg.version:
            rows.superseded.append((at or "", mid, before.config.version))
        major, minor, patch = _release(cfg.version)
        rows.versions.append(
            (
                mid,
                cfg.version,
                major,
                minor,
                patch,
                str(cfg.status),
                config_json(cfg),
                _metrics_json(cfg.metrics),
                at,
                event.actor,
                after.revision,
                p,
                o,
            )
        )
        rows.version_metrics.pop((mid, cfg.version), None)
    elif before.config.metrics is not cfg.metrics and before.config.metrics != cfg.metrics:
        rows.version_metrics[(mid, cfg.version)] = cfg.metrics


def _diff_ab(
    before: ModelState | None,
    after: ModelState,
    event: EventBase,
    at: str | None,
    rows: BatchRows,
    p: int,
    o: int,
) -> None:
    old = before.ab_test if before is not None else None
    new = after.ab_test
    if old is not None and (new is None or new.test_id != old.test_id):
        reason = _reason(event) if isinstance(event, ABTestStopped) else f"ended by {event.type}"  # type: ignore[attr-defined]
        rows.ab_updates.append(
            (
                "stopped",
                at,
                event.actor,
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
                after.model_id,
                new.champion_model_id,
                new.routing,
                new.traffic_percentage,
                new.split_version,
                "running",
                iso(new.started_at),
                event.actor,
                o,
                p,
            )
        )
        rows.ab_splits.append(
            (new.test_id, new.split_version, new.traffic_percentage, None, at, event.actor, p, o)
        )
    elif new is not None and old is not None and new.split_version != old.split_version:
        rows.ab_splits.append(
            (
                new.test_id,
                new.split_version,
                new.traffic_percentage,
                old.traffic_percentage,
                at,
                event.actor,
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
