"""Audit replay: the events of ``registry.events`` by offset or time range, filtered.

The log is the source of truth, so replay reads Kafka (through the shared ``LogFollower``),
not the projection. A time range is
turned into offsets with ``offsets_for_times`` (on record timestamps, widened by a slack for
clock differences) and then filtered exactly on each event's ``occurred_at``. A broker that
answers ``offsets_for_times`` without a timestamp (the embedded one does) is not trusted:
the replay then reads the whole range and filters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from projections.guard import high_watermarks
from registry.core.codec import decode_event
from registry.core.errors import DecodeError
from registry.core.messages import EventBase, RegistryCleared
from registry.infra.kafka.follower import LogFollower
from registry.infra.settings import Settings

__all__ = ["AuditEntry", "ReplayFilter", "dumps", "entry_from_row", "replay"]

CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record of the log: the event, or why it could not be read."""

    partition: int
    offset: int
    timestamp_ms: int
    event: EventBase | None
    error: str | None = None
    applied: bool | None = None  # from the projection: folded in or refused; None from Kafka

    @property
    def type(self) -> str:
        return self.event.type if self.event is not None else "(unreadable)"

    @property
    def model_id(self) -> str | None:
        return self.event.model_id if self.event is not None else None

    @property
    def actor(self) -> str | None:
        return self.event.actor if self.event is not None else None

    @property
    def occurred_at(self) -> datetime:
        if self.event is not None:
            return self.event.occurred_at
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def names(self, model_id: str) -> bool:
        """True for a registry-wide event that affected ``model_id``."""
        return isinstance(self.event, RegistryCleared) and model_id in self.event.payload.model_ids

    def to_json(self) -> dict[str, Any]:
        """JSON-lines form: the position and the event in its wire form."""
        out: dict[str, Any] = {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp_ms,
        }
        if self.applied is not None:
            out["applied"] = self.applied
        if self.event is not None:
            out["event"] = self.event.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            out["error"] = self.error
        return out


def entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """An entry from an ``events`` row (partition, offset, timestamp_ms, applied, value)."""
    return AuditEntry(row[0], row[1], row[2], decode_event(row[4]), applied=bool(row[3]))


@dataclass(frozen=True)
class ReplayFilter:
    """Which events a replay yields. Unreadable records pass only an unfiltered replay."""

    model_id: str | None = None
    types: frozenset[str] = field(default_factory=frozenset)
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def selective(self) -> bool:
        return bool(self.model_id or self.types or self.actor)

    def header_allows(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Cheap pre-filter on the ``type`` header, before decoding."""
        if not self.types:
            return True
        for key, value in record.headers or ():
            if key == "type":
                return value.decode("utf-8", "replace") in self.types
        return True  # no header: decide after decoding

    def allows(self, entry: AuditEntry) -> bool:
        when = entry.occurred_at
        if (self.since and when < self.since) or (self.until and when > self.until):
            return False
        if entry.event is None:
            return not self.selective
        if self.types and entry.type not in self.types:
            return False
        if self.actor and entry.actor != self.actor:
            return False
        return not self.model_id or entry.model_id == self.model_id or entry.names(self.model_id)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _time_bound(consumer: AIOKafkaConsumer, tp: TopicPartition, when: datetime) -> int | None:
    """The first offset at or after ``when`` if the broker answers it credibly, else None.

    Returns -1 when the broker says no record is that late. An answer is credible when the
    record at the offset it names carries the timestamp it claims (the embedded broker
    answers offset 0 with the current time whatever is asked).
    """
    answer = (await consumer.offsets_for_times({tp: int(when.timestamp() * 1000)})).get(tp)
    if answer is None:
        return -1
    if answer.timestamp < 0:
        return None
    consumer.seek(tp, answer.offset)
    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
    records = batch.get(tp, [])
    if (
        not records
        or records[0].offset != answer.offset
        or records[0].timestamp != answer.timestamp
    ):
        return None
    return int(answer.offset)


async def _ranges(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    flt: ReplayFilter,
    from_offset: int | None,
    to_offset: int | None,
) -> dict[TopicPartition, tuple[int, int]]:
    hws = await high_watermarks(consumer, tps)
    out = {}
    for tp in tps:
        start, end = max(0, from_offset or 0), hws[tp]
        if to_offset is not None:
            end = min(end, to_offset + 1)
        if flt.since is not None:
            bound = await _time_bound(consumer, tp, flt.since - CLOCK_SLACK)
            if bound is not None:
                start = max(start, end if bound < 0 else bound)
        if flt.until is not None:
            bound = await _time_bound(consumer, tp, flt.until + CLOCK_SLACK)
            if bound is not None and bound >= 0:
                end = min(end, bound)
        out[tp] = (start, end)
    return out


async def replay(
    settings: Settings,
    *,
    from_offset: int | None = None,
    to_offset: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    model_id: str | None = None,
    types: Sequence[str] = (),
    actor: str | None = None,
    partitions: Sequence[int] | None = None,
) -> AsyncIterator[AuditEntry]:
    """Yield the matching records of ``registry.events``, in log order per partition.

    Offsets are inclusive (``from_offset``..``to_offset``); times compare with ``occurred_at``
    (naive means UTC). Stops at the high watermark seen when the replay started.
    """
    flt = ReplayFilter(model_id, frozenset(types), actor, _utc(since), _utc(until))
    follower = LogFollower(
        settings,
        [settings.topic("registry.events")],
        name="audit replay",
        partitions=partitions,
        poll_ms=500,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await follower.start()
    try:
        consumer = follower.consumer
        ranges = await _ranges(consumer, follower.partitions, flt, from_offset, to_offset)
        pending = [tp for tp, (start, end) in ranges.items() if start < end]
        await follower.seek({tp: ranges[tp][0] for tp in pending})
        while pending:
            batch = await follower.poll(only=pending)
            for tp, records in batch.items():
                end = ranges[tp][1]
                for record in records:
                    if record.offset >= end:
                        break
                    entry = _entry(record, flt)
                    if entry is not None:
                        yield entry
            pending = [tp for tp in pending if await consumer.position(tp) < ranges[tp][1]]
    finally:
        await follower.stop()


def _entry(record: ConsumerRecord[bytes, bytes], flt: ReplayFilter) -> AuditEntry | None:
    if not flt.header_allows(record):
        return None
    try:
        entry = AuditEntry(
            record.partition, record.offset, record.timestamp, decode_event(record.value)
        )
    except DecodeError as exc:
        entry = AuditEntry(record.partition, record.offset, record.timestamp, None, exc.reason)
    return entry if flt.allows(entry) else None


def dumps(entry: AuditEntry) -> str:
    """One JSON line."""
    return orjson.dumps(entry.to_json()).decode()
