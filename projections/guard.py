"""Checks that the log is the history the projection was built from.

A projection must never mix two histories. At start the projector compares:

- the topic and the cluster id recorded in ``projection_meta`` with the ones it reads now;
- for each partition, the last record it stored with the record the log holds at that
  offset (which also catches a stored position beyond the high watermark: the broker lost
  data, or the topic was recreated, perhaps with different events).
"""

from __future__ import annotations

import hashlib
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.errors import ProjectionHistoryMismatch
from registry.core.errors import BrokerUnavailable

__all__ = [
    "high_watermarks",
    "placeholder",
    "placeholder_digest",
    "verify_stored_record",
]

PLACEHOLDER_TYPE = "UnreadableRecordRestored"


def placeholder(digest: str | None, size: int) -> bytes:
    """What a restore writes in place of an unreadable record (whose bytes are not kept):
    a record at the same offset that names the original's digest and stays unreadable."""
    return orjson.dumps({"type": PLACEHOLDER_TYPE, "sha256": digest, "size": size})


def placeholder_digest(value: bytes | None) -> str | None:
    """The original digest if ``value`` is a restore placeholder, else None."""
    if not value or PLACEHOLDER_TYPE.encode() not in value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if (
        isinstance(obj, dict)
        and obj.get("type") == PLACEHOLDER_TYPE
        and isinstance(obj.get("sha256"), str)
    ):
        return str(obj["sha256"])
    return None


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout: float = 10.0
) -> dict[TopicPartition, int]:
    """High watermarks as seen in fetch responses (``end_offsets()`` lags on the embedded broker).

    Moves the consumer's positions; callers seek afterwards.
    """
    for tp in tps:
        consumer.seek(tp, 0)
    deadline = time.monotonic() + timeout
    while True:
        hws = {tp: consumer.highwater(tp) for tp in tps}
        if all(hw is not None for hw in hws.values()):
            return {tp: int(hw) for tp, hw in hws.items() if hw is not None}
        if time.monotonic() > deadline:
            raise BrokerUnavailable(
                f"no fetch answer for {[str(tp) for tp in tps]} within {timeout}s"
            )
        await consumer.getmany(*tps, timeout_ms=100, max_records=1)


async def verify_stored_record(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    stored: tuple[int, bytes | None, str | None],
    next_offset: int,
    timeout: float = 10.0,
) -> None:
    """Raise ``ProjectionHistoryMismatch`` unless the log holds ``stored`` at its offset.

    ``stored`` is (offset, value bytes) for an event, or (offset, None, sha256) for an
    unreadable record whose bytes the projection does not keep.
    """
    offset, value, digest = stored
    consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=100, max_records=1)
        records = batch.get(tp, [])
        hw = consumer.highwater(tp)
        if records:
            record = records[0]
            if record.offset != offset:
                raise ProjectionHistoryMismatch(
                    f"{tp.topic}[{tp.partition}] holds no record at offset {offset} any more "
                    f"(the next one is {record.offset}): the log was rewritten"
                )
            if not _same(record.value, value, digest):
                raise ProjectionHistoryMismatch(
                    f"{tp.topic}[{tp.partition}] offset {offset} holds a different record than the "
                    "one "
                    "projected there: the topic was recreated with another history"
                )
            return
        if hw is not None and hw < next_offset:
            raise ProjectionHistoryMismatch(
                f"the projection is at offset {next_offset} of {tp.topic}[{tp.partition}] but the "
                "log "
                f"ends at {hw}: the broker lost data or the topic was recreated"
            )
    raise BrokerUnavailable(f"no fetch answer for {tp} within {timeout}s")


def _same(actual: bytes | None, value: bytes | None, digest: str | None) -> bool:
    if value is not None:
        return actual == value
    if digest is None:
        return actual is None
    return (
        hashlib.sha256(actual or b"").hexdigest() == digest or placeholder_digest(actual) == digest
    )
