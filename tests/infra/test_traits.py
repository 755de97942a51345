"""What the broker is like, learned at run time, and the fetch waits that follow from it
(docs/design.md#brokers). Runs on both brokers: the same promises, different means."""

from __future__ import annotations

import asyncio
import os
import time

from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of, start_client
from registry.infra.kafka.follower import LogFollower
from registry.infra.kafka.traits import EMBEDDED_FETCH_WAIT_MS, broker_traits
from registry.infra.settings import Settings

ON_KAFKA = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


async def test_the_broker_is_recognised_by_its_own_answer(settings: Settings) -> None:
    traits = await broker_traits(settings)
    assert traits is not None
    assert traits.kafka is ON_KAFKA
    assert traits.exact_end_offsets is ON_KAFKA
    assert traits.fetch_max_wait_ms(500) == (500 if ON_KAFKA else EMBEDDED_FETCH_WAIT_MS)
    assert traits.fetch_max_wait_ms(5) == 5
    assert await broker_traits(settings) is traits  # asked once per bootstrap address


async def test_no_answer_means_no_traits_and_no_error() -> None:
    assert await broker_traits(Settings(bootstrap_servers="127.0.0.1:9"), timeout=1) is None


async def test_a_new_record_is_read_at_once_by_a_consumer_with_a_long_fetch_wait(
    settings: Settings,
) -> None:
    """500 ms is what ``Settings.from_env`` gives with a named broker. On Kafka the waiting
    fetch is answered when the record arrives; on the embedded broker the wait is capped."""
    slow = settings.with_(fetch_max_wait_ms=500)
    consumer = make_consumer(slow)
    producer = make_producer(slow, linger_ms=0)
    await start_client(consumer, slow)
    await start_client(producer, slow)
    try:
        tps = await partitions_of(consumer, slow.topic("registry.replies"))
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        assert await consumer.getmany(timeout_ms=700) == {}  # idle: a fetch is waiting
        latencies = []
        for i in range(5):
            sent = time.monotonic()
            await producer.send_and_wait(slow.topic("registry.replies"), b"r%d" % i)
            got: list[object] = []
            while not got:
                batch = await consumer.getmany(timeout_ms=2000)
                got = [r for records in batch.values() for r in records]
            latencies.append(time.monotonic() - sent)
            await asyncio.sleep(0.3)  # idle again between records
    finally:
        await consumer.stop()
        await producer.stop()
    assert sorted(latencies)[2] < 0.2, latencies  # the median: not a 500 ms wait


async def test_a_follower_of_logs_read_to_their_end_is_caught_up_without_a_fetch_wait(
    settings: Settings,
) -> None:
    slow = settings.with_(fetch_max_wait_ms=500)
    producer = make_producer(slow)
    await start_client(producer, slow)
    try:
        await producer.send_and_wait(slow.topic("registry.events"), b"e0")
    finally:
        await producer.stop()
    topics = [slow.topic("registry.events"), slow.topic("predictions.results")]
    follower = LogFollower(slow, topics, name="test")
    await follower.start()
    try:
        started = time.monotonic()
        read: list[bytes] = []
        await follower.catch_up(lambda b: read.extend(r.value for rs in b.values() for r in rs))
        first = time.monotonic() - started
        started = time.monotonic()
        await follower.catch_up(lambda b: read.extend(r.value for rs in b.values() for r in rs))
        again = time.monotonic() - started
    finally:
        await follower.stop()
    assert read == [b"e0"]
    assert follower.caught_up()
    # On Kafka the ends are asked (end_offsets), so an idle log costs no fetch wait at all;
    # on the embedded broker the capped wait keeps it short.
    assert again < (0.1 if ON_KAFKA else 0.3), again
    assert first < 1.0, first
