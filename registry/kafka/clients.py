"""aiokafka client factories and the catch-up loop shared by every reader of a log.

This module is the cut-off point: aiokafka's errors are mapped to ``BrokerUnavailable`` here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from registry.domain.errors import BrokerUnavailable
from registry.settings import Settings

__all__ = ["make_consumer", "make_producer", "partitions_of", "read_until_caught_up", "start_client"]


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with acks=all (every registry write must be durable before it is answered)."""
    kwargs: dict[str, Any] = {"acks": "all", "linger_ms": 2, "max_batch_size": 256 * 1024}
    kwargs.update(overrides)
    return AIOKafkaProducer(**settings.client_kwargs(), **kwargs)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits and the configured fetch wait."""
    kwargs: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **settings.client_kwargs(), **kwargs)


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, settings: Settings) -> None:
    """Start a client, mapping connection failures to ``BrokerUnavailable``."""
    try:
        await client.start()
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    """The partitions of ``topic`` (waits for metadata)."""
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"topic {topic} has no partitions (does it exist?)")
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public way to refresh
        await asyncio.sleep(0.05)


async def read_until_caught_up(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    handle: Callable[[TopicPartition, list[ConsumerRecord[bytes, bytes]]], Awaitable[None] | None],
    *,
    max_records: int = 10000,
    idle_timeout_ms: int = 200,
) -> None:
    """Feed ``handle`` every record from the current positions to the end of each partition.

    "The end" is the high watermark seen in fetch responses, not ``end_offsets()``, which the
    embedded broker answers wrongly (DESIGN.md section 10). Offsets may have gaps, so the
    test is ``position >= highwater``, never ``last offset + 1``.
    """
    pending = set(partitions)
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=idle_timeout_ms, max_records=max_records)
        for tp, records in batch.items():
            if records:
                result = handle(tp, records)
                if result is not None:
                    await result
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is None:
                continue  # no fetch answered for it yet
            if await consumer.position(tp) >= hw:
                pending.discard(tp)
