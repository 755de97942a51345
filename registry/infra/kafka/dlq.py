"""Dead-letter queues: a record a reader refuses goes to ``<topic>.dlq`` with the reason.

A record that fits is copied whole: original key, value and headers, plus ``dlq.*`` headers
saying where it came from and why (``dlq.reason``, ``dlq.source.topic``,
``dlq.source.partition``, ``dlq.source.offset``, ``dlq.source.bytes``, ``dlq.form: copy``).

A record that cannot be copied whole - larger than ``excerpt_bytes`` (the settings'
``REGISTRY_LIMITS_DLQ_EXCERPT_BYTES``), or refused by the producer or the broker as too large -
is written as a **reference**: the same ``dlq.*`` headers with ``dlq.form: reference`` and
``dlq.excerpt.bytes``, the original key when it is small (else ``dlq.source.key.bytes``), the
original headers dropped, and as value a marker line followed by the first bytes of the
record (``DLQ-REFERENCE: excerpt of the first N of M bytes``), never mistaken for the record.

Writing is retried with backoff and never raises: a dead letter that still cannot be written
after the retries is logged (topic, partition, offset, reason) and reported as ``FAILED``,
which the caller counts (``dlq_failed``) before going on. A reason never quotes the record.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_EXCERPT_BYTES", "DlqOutcome", "dlq_topic", "send_to_dlq"]

DEFAULT_EXCERPT_BYTES = 64 * 1024
"""The default of ``LimitSettings.dlq_excerpt_bytes``."""

_MAX_REASON = 1000  # characters of a reason kept in the header
_MAX_KEY = 1024  # a larger original key is left out of a reference
_SMALL_EXCERPT = 1024  # the excerpt tried when the broker refuses the configured one
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
_background: set[asyncio.Task[DlqOutcome]] = set()


class DlqOutcome(enum.StrEnum):
    """What became of a dead letter."""

    COPIED = "copied"  # the whole record, with the dlq.* headers
    REFERENCE = "reference"  # too large to copy: position, size, reason and an excerpt
    FAILED = "failed"  # could not be written after the retries (logged)
    QUEUED = "queued"  # ``wait=False``: handed to a background task


def dlq_topic(topic: str) -> str:
    """The DLQ of ``topic``."""
    return f"{topic}.dlq"


def _size(record: ConsumerRecord[bytes, bytes]) -> int:
    size = len(record.value or b"") + len(record.key or b"")
    for name, value in record.headers or ():
        size += len(name) + len(value or b"")
    return size


def _clean_reason(reason: str) -> bytes:
    text = "".join(c if c.isprintable() else " " for c in str(reason)[:_MAX_REASON])
    return text.encode("utf-8", "replace")


async def send_to_dlq(
    producer: AIOKafkaProducer,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    *,
    wait: bool = True,
    excerpt_bytes: int = DEFAULT_EXCERPT_BYTES,
    retries: int = 5,
    backoff_s: float = 0.1,
) -> DlqOutcome:
    """Write ``record`` to its topic's DLQ with ``reason``: whole when it fits, else as a
    reference (see the module doc). Retries ``retries`` times with exponential backoff;
    never raises (but for cancellation). ``wait=False`` returns at once, the writing going
    on in the background.
    """
    if not wait:
        task = asyncio.create_task(
            send_to_dlq(
                producer,
                record,
                reason,
                excerpt_bytes=excerpt_bytes,
                retries=retries,
                backoff_s=backoff_s,
            )
        )
        _background.add(task)
        task.add_done_callback(_background.discard)
        return DlqOutcome.QUEUED
    size = _size(record)
    reason_bytes = _clean_reason(reason)
    where = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "reason": reason_bytes.decode("utf-8", "replace"),
        "bytes": size,
    }
    attempt_ = _Attempt(producer, record, reason_bytes, size, excerpt_bytes)
    failure: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            outcome = await attempt_.write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead letter must never stop its reader
            failure = exc
        else:
            log.warning(
                "sent to DLQ" if outcome is DlqOutcome.COPIED else "sent to DLQ as a reference",
                extra=where,
            )
            return outcome
        if attempt < retries:
            await asyncio.sleep(backoff_s * (2**attempt) * (0.5 + random.random()))  # noqa: S311
    log.error(
        "could not write a dead letter after %d attempts (%s); it is counted as dlq_failed",
        retries + 1,
        type(failure).__name__,
        extra=where,
    )
    return DlqOutcome.FAILED


class _Attempt:
    """Writes one dead letter: whole while it may fit, else as a reference with an excerpt
    that shrinks each time the producer or the broker refuses it as too large."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        record: ConsumerRecord[bytes, bytes],
        reason: bytes,
        size: int,
        excerpt_bytes: int,
    ) -> None:
        self.producer, self.record, self.reason, self.size = producer, record, reason, size
        self.whole = size <= excerpt_bytes
        self.excerpts = [excerpt_bytes, min(excerpt_bytes, _SMALL_EXCERPT), 0]

    async def write(self) -> DlqOutcome:
        if self.whole:
            try:
                await _write_copy(self.producer, self.record, self.reason, self.size)
                return DlqOutcome.COPIED
            except _TOO_LARGE:
                self.whole = False  # refused as too large: a reference, now
        while True:
            try:
                await _write_reference(
                    self.producer, self.record, self.reason, self.size, self.excerpts[0]
                )
                return DlqOutcome.REFERENCE
            except _TOO_LARGE:
                if len(self.excerpts) == 1:
                    raise
                self.excerpts.pop(0)


def _dlq_headers(
    record: ConsumerRecord[bytes, bytes], reason: bytes, size: int, form: bytes
) -> list[tuple[str, bytes]]:
    return [
        ("dlq.reason", reason),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        ("dlq.source.bytes", str(size).encode()),
        ("dlq.form", form),
    ]


async def _write_copy(
    producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes], reason: bytes, size: int
) -> None:
    original: Sequence[tuple[str, bytes]] = [
        (name, value) for name, value in (record.headers or ()) if not name.startswith("dlq.")
    ]
    headers = [*original, *_dlq_headers(record, reason, size, b"copy")]
    fut = await producer.send(
        dlq_topic(record.topic), record.value, key=record.key, headers=headers
    )
    await fut


async def _write_reference(
    producer: AIOKafkaProducer,
    record: ConsumerRecord[bytes, bytes],
    reason: bytes,
    size: int,
    excerpt_bytes: int,
) -> None:
    value = record.value or b""
    excerpt = value[:excerpt_bytes]
    marker = (
        f"DLQ-REFERENCE: excerpt of the first {len(excerpt)} of {len(value)} bytes "
        f"(the record is not copied whole: see dlq.reason; it is at {record.topic}"
        f"[{record.partition}]@{record.offset})\n"
    ).encode()
    headers = _dlq_headers(record, reason, size, b"reference")
    headers.append(("dlq.excerpt.bytes", str(len(excerpt)).encode()))
    key = record.key
    if key is not None and len(key) > _MAX_KEY:
        headers.append(("dlq.source.key.bytes", str(len(key)).encode()))
        key = None
    fut = await producer.send(dlq_topic(record.topic), marker + excerpt, key=key, headers=headers)
    await fut
