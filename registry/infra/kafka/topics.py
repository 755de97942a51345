"""The topics (docs/design.md#topics) and their idempotent creation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from registry.core.errors import BrokerUnavailable
from registry.infra.settings import Settings

__all__ = ["MAX_RECORD_BYTES", "TOPICS", "TopicSpec", "cluster_id", "ensure_topics"]

log = logging.getLogger(__name__)
DAY_MS = 24 * 3600 * 1000
MAX_RECORD_BYTES = 8 * 1024 * 1024
"""Every topic's ``max.message.bytes``: well above every limit of ``LimitSettings``, so that
an oversized record reaches its reader and is refused there with a typed reason (and
dead-lettered as a reference), the same on every broker, rather than refused to its
producer by a broker default (about 1 MiB on Apache Kafka; none on the embedded broker)."""


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic: its name (before the prefix), partitions and retention."""

    name: str
    registry: bool  # one partition (one total order), else Settings.prediction_partitions
    retention_ms: int

    def partitions(self, settings: Settings) -> int:
        if self.registry or self.name.endswith(".dlq"):
            return 1
        return settings.prediction_partitions


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("registry.commands", True, 7 * DAY_MS),
    TopicSpec("registry.events", True, -1),  # the source of truth: kept forever
    TopicSpec("registry.replies", True, DAY_MS),
    TopicSpec("predictions.requests", False, 7 * DAY_MS),
    TopicSpec("predictions.results", False, 30 * DAY_MS),
    TopicSpec("predictions.outcomes", False, 30 * DAY_MS),
    TopicSpec("registry.commands.dlq", True, 30 * DAY_MS),
    TopicSpec("registry.events.dlq", True, 30 * DAY_MS),
    TopicSpec("predictions.requests.dlq", False, 30 * DAY_MS),
    TopicSpec("predictions.results.dlq", False, 30 * DAY_MS),
    TopicSpec("predictions.outcomes.dlq", False, 30 * DAY_MS),
)


async def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create the missing topics (idempotent); returns the names created.

    Raises:
        BrokerUnavailable: the cluster could not be reached.
    """
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                settings.topic(spec.name),
                spec.partitions(settings),
                settings.replication_factor,
                topic_configs={
                    "retention.ms": str(spec.retention_ms),
                    "max.message.bytes": str(MAX_RECORD_BYTES),
                },
            )
            for spec in specs
            if settings.topic(spec.name) not in existing
        ]
        if new:
            # a concurrent creator may win the race; the topic is there either way
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics %s", [t.name for t in new])
        return [t.name for t in new]


async def cluster_id(settings: Settings) -> str | None:
    """The cluster id the broker reports (``DescribeCluster`` / metadata).

    Raises:
        BrokerUnavailable: the cluster could not be reached.
    """
    async with _admin(settings) as admin:
        try:
            info = await admin.describe_cluster()
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
            ) from exc
    value = info.get("cluster_id")
    return str(value) if value else None


@contextlib.asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=10000)
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from exc
    try:
        yield admin
    finally:
        await admin.close()
