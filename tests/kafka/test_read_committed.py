"""Readers read committed records only (Apache Kafka: transactions exist there only).

A transactional decider that was fenced leaves aborted appends in ``registry.events``; an
open transaction leaves records nobody may believe yet. Neither is read, and a follower
still knows where the readable log ends (its last stable offset).
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from registry.infra.settings import Settings
from tests.helpers import read_topic

pytestmark = pytest.mark.kafka_only


async def test_aborted_and_open_transactions_are_not_read_and_the_end_is_still_reached(
    settings: Settings,
) -> None:
    topic = settings.topic("registry.events")
    producer = AIOKafkaProducer(
        **settings.client_kwargs(), transactional_id=f"{settings.topic_prefix}t", acks="all"
    )
    await producer.start()
    try:
        for value, commit in ((b"e1", True), (b"aborted", False), (b"e2", True)):
            await producer.begin_transaction()
            await producer.send_and_wait(topic, value)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
        assert [r.value for r in await read_topic(settings, "registry.events")] == [b"e1", b"e2"]

        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"open")
        # the open transaction's record is past the last stable offset: not read, not waited for
        assert [r.value for r in await read_topic(settings, "registry.events")] == [b"e1", b"e2"]
        await producer.commit_transaction()
    finally:
        await producer.stop()
    assert [r.value for r in await read_topic(settings, "registry.events")] == [
        b"e1",
        b"e2",
        b"open",
    ]
