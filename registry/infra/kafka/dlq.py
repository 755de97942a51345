"""Dead-letter queues: an unreadable record goes to ``<topic>.dlq`` with the reason.

The original key, value and headers are kept; ``dlq.*`` headers say where it came from and
why. Nothing is lost and the consumer goes on.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer, ConsumerRecord

log = logging.getLogger(__name__)

__all__ = ["dlq_topic", "send_to_dlq"]


def dlq_topic(topic: str) -> str:
    """The DLQ of ``topic``."""
    return f"{topic}.dlq"


async def send_to_dlq(
    producer: AIOKafkaProducer,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    *,
    wait: bool = True,
) -> None:
    """Copy ``record`` to its topic's DLQ with ``reason`` (and the source position) in headers."""
    headers = list(record.headers or ()) + [
        ("dlq.reason", reason.encode("utf-8", "replace")[:4000]),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
    ]
    log.warning(
        "sent to DLQ",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": reason,
        },
    )
    fut = await producer.send(
        dlq_topic(record.topic), record.value, key=record.key, headers=headers
    )
    if wait:
        await fut
