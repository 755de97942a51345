"""Shared fixtures: a real Kafka-protocol broker and per-test topic prefixes.

``kafka_bootstrap`` is the cluster in ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a freshly
started embedded broker (Tansu) on a free loopback port, stopped at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from registry.infra.identity import ensure_local, write_actors
from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import DeciderSettings, Settings

# Timing health checks are meaningless on a loaded 2-core CI machine; correctness is not.
hypothesis_settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A bootstrap address of a real Kafka-protocol broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix, so tests sharing one cluster never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: object) -> Settings:
    """Settings for one test, with every registry topic created under a fresh prefix."""
    s = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        data_dir=tmp_path,  # type: ignore[arg-type]
        fetch_max_wait_ms=20,
        decider=DeciderSettings(allow_clear=True),
    )
    # A signing identity and an actors file naming it admin, in tmp_path. It may sign for
    # any actor (as a gateway would), so tests can write as "alice" or "ops".
    identity = ensure_local(s)
    write_actors(
        s.actors_file,
        [
            {
                "name": identity.actor,
                "public_key": identity.public_key,
                "roles": ["admin"],
                "signs_for": ["*"],
            }
        ],
    )
    await ensure_topics(s)
    return s
