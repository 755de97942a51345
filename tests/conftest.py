"""Shared fixtures: a real Kafka-protocol broker and per-test topic prefixes.

``kafka_bootstrap`` is the cluster in ``KAFKA_BOOTSTRAP_SERVERS`` when set (the Apache Kafka
pass of ``.ci/run``), else a freshly started embedded broker (Tansu) on a free loopback port,
stopped at the end of the session.

Two markers say which broker a test exists for (pyproject.toml registers them):
``embedded_only`` tests are skipped in the Kafka pass, ``kafka_only`` tests in the embedded
pass. In the Kafka pass a skipped test that needs the broker (it uses ``kafka_bootstrap``,
directly or through ``settings``, or is ``kafka_only``) is reported as a failure: a test
that quietly did not run on Kafka proves nothing about Kafka.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from registry.infra.identity import (
    api_entry,
    ensure_api,
    ensure_local,
    ensure_monitor,
    monitor_entry,
    write_actors,
)
from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import DeciderSettings, Settings

# Timing health checks are meaningless on a loaded 2-core CI machine; correctness is not.
hypothesis_settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("ci")

ON_KAFKA = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the tests written for the other broker."""
    for item in items:
        if ON_KAFKA and item.get_closest_marker("embedded_only"):
            item.add_marker(pytest.mark.skip(reason="embedded broker only (Tansu's behaviour)"))
        if not ON_KAFKA and item.get_closest_marker("kafka_only"):
            item.add_marker(
                pytest.mark.skip(reason="needs Apache Kafka: set KAFKA_BOOTSTRAP_SERVERS")
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """In the Kafka pass, a skipped test that needs the broker fails."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (ON_KAFKA and report.skipped) or item.get_closest_marker("embedded_only"):
        return
    needs_kafka = "kafka_bootstrap" in getattr(item, "fixturenames", ())
    if needs_kafka or item.get_closest_marker("kafka_only"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in the Apache Kafka pass ({reason}); a test that needs Kafka must run "
            "there, or be marked embedded_only"
        )


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
async def settings(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: object
) -> AsyncIterator[Settings]:
    """Settings for one test, with every registry topic created under a fresh prefix.

    On an external cluster the test's topics are deleted afterwards: a broker keeps files
    open per partition, and a whole run creates thousands of them.
    """
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
            },
            monitor_entry(ensure_monitor(s)),  # the guard's actor, as `up` names it
            api_entry(ensure_api(s)),  # the HTTP API's gateway, as `up` names it
        ],
    )
    await ensure_topics(s)
    yield s
    if ON_KAFKA:
        await _delete_topics(s)


async def _delete_topics(s: Settings) -> None:
    admin = AIOKafkaAdminClient(**s.client_kwargs(), request_timeout_ms=10000)
    with contextlib.suppress(Exception):  # best effort: a leftover topic harms nobody
        await admin.start()
        ours = [t for t in await admin.list_topics() if t.startswith(s.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    with contextlib.suppress(Exception):
        await admin.close()
