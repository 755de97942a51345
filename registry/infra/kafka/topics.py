"""The topics (docs/design.md#topics) and their idempotent creation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from registry.core.errors import BrokerUnavailable
from registry.infra.settings import Settings, SettingsError

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
    # a shadow challenger's answers to mirrored requests: compared by the monitor, never
    # anyone's answer (callers read predictions.results)
    TopicSpec("predictions.shadow", False, 30 * DAY_MS),
    TopicSpec("registry.commands.dlq", True, 30 * DAY_MS),
    TopicSpec("registry.events.dlq", True, 30 * DAY_MS),
    TopicSpec("predictions.requests.dlq", False, 30 * DAY_MS),
    TopicSpec("predictions.results.dlq", False, 30 * DAY_MS),
    TopicSpec("predictions.outcomes.dlq", False, 30 * DAY_MS),
    TopicSpec("predictions.shadow.dlq", False, 30 * DAY_MS),
)


async def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create the missing topics (idempotent); returns the names created.

    Raises:
        BrokerUnavailable: the cluster could not be reached, or refused a topic.
        SettingsError: the cluster refused a topic for its partitions, replication or config.
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
        if not new:
            return []
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:  # an older client raises it for the whole request
            return []
        created = _created(settings, response.topic_errors)
        if created:
            log.info("created topics %s", created)
        return created


# The broker refused a topic for what it was asked (partitions, replication, a config).
_INVALID = {37, 38, 39, 40}  # InvalidPartitions, InvalidReplicationFactor, ...Assignment, ...Config


def _created(settings: Settings, answers: list[tuple[Any, ...]]) -> list[str]:
    """The topics the broker created, from its per-topic answers. A topic that already
    exists (a concurrent creator won the race, or the broker's metadata had not shown it
    yet) is not created, and is fine; any other refusal raises, naming the topic."""
    created, refused, invalid = [], [], False
    for topic, code, *rest in answers:
        if code == 0:
            created.append(topic)
        elif code != TopicAlreadyExistsError.errno:
            why = f"{for_code(code).__name__}" + (f" ({rest[0]})" if rest and rest[0] else "")
            refused.append(f"{topic}: {why}")
            invalid = invalid or code in _INVALID
    if refused:
        what = f"Kafka at {settings.bootstrap_servers} refused to create " + "; ".join(refused)
        if invalid:
            raise SettingsError(
                f"{what}. Check REGISTRY_REPLICATION_FACTOR ({settings.replication_factor}) "
                f"and REGISTRY_PREDICTION_PARTITIONS ({settings.prediction_partitions})."
            )
        raise BrokerUnavailable(what)
    return created


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
