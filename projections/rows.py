"""Folding a batch of ``registry.events`` records into the rows of one transaction.

Pure (no I/O): ``fold_batch(state, records)`` applies each readable event to the in-memory
``FoldState`` and derives the table rows from the difference between a model's state before
and after the event. The projection is therefore a function of the log alone: any batching
of the same records yields the same tables.

Each record takes one of two paths to the same result:
- fast (``projections.fastpath``): ``orjson`` parses it and a strict check of the wire
  shapes accepts it; its effect is computed on plain values;
- careful: anything the fast path is not sure of (an old ``schema_version``, a coercion
  pydantic would make, a doubtful value, garbage) is decoded by ``registry.codec`` and
  applied with the domain's own ``evolve``; unreadable records are reported from here.
``fold_batch(..., fast=False)`` takes the careful path for every record (the tests compare).

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
from typing import Any, Protocol

import orjson

from projections.fastpath import Fact, decode, evolve, evolve_clear
from projections.fastpath import set_field as _set
from projections.state import Folded, FoldState, dumps, iso, iso_text
from registry.codec import decode_event
from registry.domain.errors import DecodeError
from registry.domain.messages import (
    ABTestStopped,
    EventBase,
    ModelStatusChanged,
    ModelUnregistered,
    RegistryCleared,
)
from registry.domain.rules import ModelState, RegistryState, RevisionGap
from registry.domain.rules import evolve as domain_evolve
from registry.domain.types import ModelConfig

__all__ = [
    "BatchRows",
    "RecordLike",
    "config_json",
    "fold_batch",
    "folded_row",
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
    return dumps(config.model_dump(mode="json", by_alias=True, exclude_none=True))


def _release(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a version that was validated already."""
    major, minor, patch = version.split("+", 1)[0].split("-", 1)[0].split(".")
    return int(major), int(minor), int(patch)


def folded_row(state: Folded, partition: int, offset: int) -> tuple[Any, ...]:
    """The ``models`` row of a state, in column order."""
    c, ab = state.config, state.ab
    trained = c.get("lastTrained")
    if ab is None:
        ab = (None, None, None, None, None, None)  # type: ignore[assignment]
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
        *ab,  # type: ignore[misc]
        partition,
        offset,
    )


def model_row(state: ModelState, partition: int, offset: int) -> tuple[Any, ...]:
    """The ``models`` row of a domain state (point-in-time answers use it)."""
    return folded_row(Folded.from_domain(state), partition, offset)


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
    models: dict[str, tuple[Folded, int, int]] = field(default_factory=dict)
    errors: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[tuple[Any, str]] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    registry_revision: int | None = None
    applied: int = 0
    records: int = 0
    careful: int = 0

    def model_rows(self) -> list[tuple[Any, ...]]:
        """The ``models`` upserts, one per touched model."""
        return [folded_row(s, p, o) for s, p, o in self.models.values()]

    def version_metric_rows(self) -> list[tuple[str | None, str, str]]:
        return [
            (None if m is None else dumps(m), mid, ver)
            for (mid, ver), m in self.version_metrics.items()
        ]


def fold_batch(
    state: FoldState | RegistryState, records: Iterable[RecordLike], *, fast: bool = True
) -> BatchRows:
    """Apply ``records`` (in log order) to ``state`` and return the rows to write.

    A domain ``RegistryState`` is accepted for convenience (tools, tests) and is *not*
    updated: fold into a ``FoldState`` to carry state from batch to batch.
    """
    if isinstance(state, RegistryState):
        state = FoldState.from_domain(state)
    # The fold allocates many short-lived objects and no reference cycles: the cyclic
    # collector would only rescan the (large, long-lived) state over and over meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _fold(state, records, fast)
    finally:
        if enabled:
            gc.enable()


_new_folded = tuple.__new__
_METRICS = "ModelMetricsRecorded"
_STATUS = "ModelStatusChanged"
_LANES = (_METRICS, _STATUS)


def _fold(  # noqa: C901 - the per-record loop, kept in one frame for speed
    state: FoldState, records: Iterable[RecordLike], fast: bool
) -> BatchRows:
    rows = BatchRows()
    models = state.models
    positions = rows.positions
    add_event = rows.events.append
    headers_cache = _HEADERS_CACHE
    records = records if isinstance(records, list) else list(records)
    for record in records:
        positions[record.partition] = record.offset + 1
        value = record.value
        fact = decode(value) if fast and value else None
        if fact is None:
            _careful(state, record, rows)
            continue
        mid = fact[2]
        if fact[1] == "RegistryCleared":
            try:
                cleared = evolve_clear(models, state.registry_revision, fact)
            except RevisionGap as gap:
                _gap(rows, fact, record, gap)
                continue
            _cleared(state, cleared, fact, record, rows)
            continue
        before = models.get(mid)
        kind = fact[1]
        if (kind in _LANES) and before is not None and (fact[3] == before.revision + 1):
            # The two commonest events, evolved and diffed inline: ``evolve`` and ``_diff``
            # restricted to what they can change (the tests hold both ways to the domain's).
            config = before.config
            data = fact[10]
            cid = config["id"]
            if kind == _METRICS:
                b_metrics = config.get("metrics")
                if b_metrics is None:
                    config = _set(config, "metrics", data)
                else:
                    config = config.copy()
                    config["metrics"] = data
                if data is not b_metrics and data != b_metrics:
                    rows.version_metrics[(cid, config["version"])] = data
            else:
                b_status = config["status"]
                config = config.copy()
                config["status"] = data
                if data != b_status:
                    rows.status_history.append(
                        (
                            cid,
                            fact[3],
                            b_status,
                            data,
                            fact[5],
                            fact[4],
                            fact[9],
                            kind,
                            fact[0],
                            record.partition,
                            record.offset,
                        )
                    )
            after = _new_folded(Folded, (config, fact[3], before[2], fact[5], before[4]))
            rows.models[cid] = (after, record.partition, record.offset)
            diffed = True
        else:
            try:
                after = evolve(before, fact)
            except RevisionGap as gap:
                _gap(rows, fact, record, gap)
                continue
            diffed = False
        models[mid] = after
        headers = record.headers
        headers_text = headers_cache.get(headers) if type(headers) is tuple else None
        if headers_text is None:
            headers_text = headers_json(headers)
        add_event(
            (
                record.partition,
                record.offset,
                *fact[
                    :9
                ],  # id, type, model_id, revision, actor, at, correlation, causation, schema
                1,
                record.timestamp,
                record.key,
                headers_text,
                value.decode("utf-8"),  # type: ignore[union-attr]
            )
        )
        if not diffed:
            _diff(before, after, fact, record, rows)
    rows.records = len(records)
    rows.applied = len(rows.events) - sum(1 for e in rows.errors if e[2] == "revision_gap")
    return rows


# --------------------------------------------------------------------------- careful path


def _reason(event: EventBase) -> str | None:
    if isinstance(event, ModelStatusChanged | ModelUnregistered | RegistryCleared | ABTestStopped):
        return event.payload.reason
    return None


def _fact_of(event: EventBase) -> Fact:
    """The envelope of a decoded event (its effect comes from the domain's ``evolve``)."""
    return Fact(
        event.id,
        event.type,  # type: ignore[attr-defined]
        event.model_id,
        event.revision,
        event.actor,
        iso(event.occurred_at) or "",
        event.correlation_id,
        event.causation_id,
        event.schema_version,
        _reason(event),
        None,
    )


def _careful(state: FoldState, record: RecordLike, rows: BatchRows) -> None:
    """Decode with ``registry.codec`` and apply with the domain's rules."""
    rows.careful += 1
    try:
        event = decode_event(record.value)
    except DecodeError as exc:
        _undecodable(rows, record, exc)
        return
    except Exception as exc:  # noqa: BLE001 - a reader's bug must not stop the projection
        _undecodable(rows, record, DecodeError(f"unreadable ({type(exc).__name__}: {exc})"))
        return
    fact = _fact_of(event)
    if isinstance(event, RegistryCleared):
        live = {mid: s.domain() for mid, s in state.models.items() if s.live}
        registry = RegistryState(live, state.registry_revision)
        try:
            registry.apply(event)
        except RevisionGap as gap:
            _gap(rows, fact, record, gap)
            return
        _cleared(
            state,
            {mid: Folded.from_domain(s) for mid, s in registry.models.items()},
            fact,
            record,
            rows,
        )
        return
    before = state.models.get(event.model_id)
    try:
        new = domain_evolve(None if before is None else before.domain(), event)
    except RevisionGap as gap:
        _gap(rows, fact, record, gap)
        return
    if new is None:  # pragma: no cover - evolve always returns a state
        return
    after = Folded.from_domain(new)
    state.models[event.model_id] = after
    rows.events.append(_event_row(fact, record, 1))
    _diff(before, after, fact, record, rows)


# --------------------------------------------------------------------------- rows


def _event_row(f: Fact, record: RecordLike, applied: int) -> tuple[Any, ...]:
    value = record.value or b""
    return (
        record.partition,
        record.offset,
        f.id,
        f.type,
        f.model_id,
        f.revision,
        f.actor,
        f.at,
        f.correlation_id,
        f.causation_id,
        f.schema_version,
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


def _gap(rows: BatchRows, f: Fact, record: RecordLike, gap: RevisionGap) -> None:
    rows.events.append(_event_row(f, record, 0))
    rows.errors.append(
        (
            record.partition,
            record.offset,
            "revision_gap",
            f"{gap}; not applied",
            f.model_id,
            f.type,
            f.id,
            f.revision,
            record.timestamp,
            record.key,
            headers_json(record.headers),
            None,
            len(record.value or b""),
        )
    )


def _cleared(
    state: FoldState, cleared: dict[str, Folded], f: Fact, record: RecordLike, rows: BatchRows
) -> None:
    """``RegistryCleared`` applied: ``cleared`` holds the new states of the live models."""
    before = {mid: state.models[mid] for mid in cleared}
    state.models.update(cleared)
    state.registry_revision = f.revision
    rows.events.append(_event_row(f, record, 1))
    rows.registry_revision = f.revision
    for mid in sorted(cleared):
        _diff(before[mid], cleared[mid], f, record, rows)


def _diff(  # noqa: C901 - one comparison per table
    before: Folded | None, after: Folded, f: Fact, record: RecordLike, rows: BatchRows
) -> None:
    """Derive history rows from what the event changed in one model."""
    p, o = record.partition, record.offset
    config = after.config
    mid, status, version = config["id"], config["status"], config["version"]
    at = f[5]
    rows.models[mid] = (after, p, o)
    if before is None:
        b_config = None
        b_status = b_version = old = None
    else:
        b_config = before.config
        b_status, b_version, old = b_config["status"], b_config["version"], before.ab
    if b_status != status:
        rows.status_history.append(
            (mid, after.revision, b_status, status, at, f[4], f[9], f[1], f[0], p, o)
        )
    if b_version != version or f[1] == "ModelRegistered":
        if b_config is not None and b_version != version:
            rows.superseded.append((at, mid, b_version))  # type: ignore[arg-type]
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
                f[4],
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
    new = after.ab
    if old is new:
        return
    actor = f[4]
    if old is not None and (new is None or new[0] != old[0]):
        reason = f[9] if f[1] == "ABTestStopped" else f"ended by {f[1]}"
        rows.ab_updates.append(("stopped", at, actor, reason, o, old[2], old[4], old[0]))
    if new is not None and (old is None or new[0] != old[0]):
        rows.ab_started.append(
            (new[0], mid, new[1], new[3], new[2], new[4], "running", new[5], actor, o, p)
        )
        rows.ab_splits.append((new[0], new[4], new[2], None, at, actor, p, o))
    elif new is not None and old is not None and new[4] != old[4]:
        rows.ab_splits.append((new[0], new[4], new[2], old[2], at, actor, p, o))
        rows.ab_updates.append(("running", None, None, None, None, new[2], new[4], new[0]))
