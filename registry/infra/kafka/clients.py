"""aiokafka client factories, partition lookup and lag.

This module is the cut-off point: aiokafka's errors are mapped to ``BrokerUnavailable`` here.

Consumers read committed records only: a transactional decider's aborted appends (a fenced
zombie's) are never seen, and on a broker without transactions nothing changes. Their fetch
wait is the broker's (``traits.BrokerTraits.fetch_max_wait_ms``): as configured on Kafka,
which answers a waiting fetch as soon as data arrives, so an idle consumer costs one fetch
per wait and a new record is read at once; at most 10 ms on the embedded broker, which
waits every fetch out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from registry.core.errors import BrokerUnavailable
from registry.infra.kafka.traits import broker_traits
from registry.infra.settings import Settings

__all__ = [
    "lag_of",
    "make_consumer",
    "make_producer",
    "partitions_of",
    "readable_end",
    "start_client",
]


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with acks=all (every registry write must be durable before it is answered)."""
    kwargs: dict[str, Any] = {"acks": "all", "linger_ms": 2, "max_batch_size": 256 * 1024}
    kwargs.update(overrides)
    return AIOKafkaProducer(**settings.client_kwargs(), **kwargs)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits, reading committed records, with the configured fetch
    wait (``start_client`` fits it to the broker)."""
    kwargs: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **settings.client_kwargs(), **kwargs)


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, settings: Settings) -> None:
    """Start a client, mapping connection failures to ``BrokerUnavailable``; a consumer's
    fetch wait is fitted to the broker first."""
    if isinstance(client, AIOKafkaConsumer):
        traits = await broker_traits(settings)
        if traits is not None:
            # read by the fetcher that start() creates; aiokafka has no public setter
            wanted = int(client._fetch_max_wait_ms)  # noqa: SLF001
            client._fetch_max_wait_ms = traits.fetch_max_wait_ms(wanted)  # noqa: SLF001
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
    """Records behind the readable end over ``partitions``; None until every one has
    answered a fetch (the end comes from fetch responses)."""
    lag = 0
    for tp in partitions:
        end = readable_end(consumer, tp)
        if end is None:
            return None
        lag += max(0, end - await consumer.position(tp))
    return lag


def readable_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Where ``tp`` ends for this consumer, as its last fetch response told: the last stable
    offset when reading committed records (an open transaction's records are not readable
    yet), else the high watermark; None before any fetch answered."""
    hw = consumer.highwater(tp)
    if hw is None:
        return None
    committed_only = getattr(consumer, "_isolation_level", "") == "read_committed"
    lso = consumer.last_stable_offset(tp) if committed_only else None
    if lso is not None and 0 <= lso <= hw:
        return int(lso)
    return int(hw)
