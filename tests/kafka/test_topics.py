"""Topic creation on Apache Kafka: idempotent even before the broker's metadata shows a new
topic, and a refusal is an error naming the topic and the setting (never silently ignored)."""

from __future__ import annotations

import pytest

from registry.infra.kafka.topics import TOPICS, ensure_topics
from registry.infra.settings import Settings, SettingsError

pytestmark = pytest.mark.kafka_only


async def test_creating_twice_at_once_creates_once(settings: Settings) -> None:
    fresh = settings.with_(topic_prefix=f"{settings.topic_prefix}again.")
    first = await ensure_topics(fresh)
    second = await ensure_topics(fresh)  # the broker's metadata may not list them yet
    assert sorted(first) == sorted(fresh.topic(t.name) for t in TOPICS)
    assert second == []


async def test_a_topic_the_cluster_refuses_is_an_error_naming_the_setting(
    settings: Settings,
) -> None:
    impossible = settings.with_(topic_prefix=f"{settings.topic_prefix}rf.", replication_factor=10)
    with pytest.raises(
        SettingsError, match=r"InvalidReplicationFactor.*REGISTRY_REPLICATION_FACTOR"
    ):
        await ensure_topics(impossible)
