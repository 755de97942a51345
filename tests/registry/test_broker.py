"""The embedded broker and the Kafka plumbing, against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry.kafka.broker import EmbeddedBroker
from registry.kafka.clients import make_consumer, make_producer, partitions_of, read_until_caught_up
from registry.kafka.topics import TOPICS, ensure_topics
from registry.settings import Settings


async def test_produce_and_consume_round_trip(settings: Settings) -> None:
    topic = settings.topic("registry.events")
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic, f"v{i}".encode(), key=b"k", headers=[("type", b"X")])
        await producer.flush()
    finally:
        await producer.stop()
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: list[bytes] = []
        await read_until_caught_up(consumer, tps, lambda tp, recs: seen.extend(r.value for r in recs))
    finally:
        await consumer.stop()
    assert seen == [f"v{i}".encode() for i in range(50)]


async def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    assert await ensure_topics(settings) == []  # the fixture created them all already
    other = settings.with_(topic_prefix=settings.topic_prefix + "x.")
    created = await ensure_topics(other)
    assert sorted(created) == sorted(other.topic(t.name) for t in TOPICS)


async def test_catch_up_on_empty_partition_terminates(settings: Settings) -> None:
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.topic("registry.replies"))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: list[object] = []
        await read_until_caught_up(consumer, tps, lambda tp, recs: seen.extend(recs))
        assert seen == []
    finally:
        await consumer.stop()


def test_broker_stops_cleanly() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_broker_dies_with_its_parent() -> None:
    """An interrupted run (parent killed with SIGKILL) leaves no orphan broker behind."""
    code = (
        "from registry.kafka.broker import EmbeddedBroker\n"
        "import os, sys, time\n"
        "b = EmbeddedBroker(); b.start(); print(b.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    import time

    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        # a zombie still answers kill(0) until reaped by init; check its state
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"broker {pid} outlived its parent")
