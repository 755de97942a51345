"""aiokafka client factories, partition lookup and lag.

This module is the cut-off point: aiokafka's errors are mapped to ``BrokerUnavailable`` here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from registry.core.errors import BrokerUnavailable
from registry.infra.settings import Settings

__all__ = [
    "lag_of",
    "make_consumer",
    "make_producer",
    "partitions_of",
    "start_client",
]


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
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from exc


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0
) -> list[TopicPartition]:
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


async def lag_of(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> int | None:
    """Records behind the high watermark over ``partitions``; None until every one has
    answered a fetch (the high watermark comes from fetch responses)."""
    lag = 0
    for tp in partitions:
        hw = consumer.highwater(tp)
        if hw is None:
            return None
        lag += max(0, hw - await consumer.position(tp))
    return lag
