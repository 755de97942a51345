"""The embedded broker and the Kafka plumbing, against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.clients import make_producer
from registry.infra.kafka.topics import TOPICS, ensure_topics
from registry.infra.settings import Settings
from tests.helpers import eventually, read_topic


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
    seen = [r.value for r in await read_topic(settings, "registry.events")]
    assert seen == [f"v{i}".encode() for i in range(50)]


async def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    assert await ensure_topics(settings) == []  # the fixture created them all already
    other = settings.with_(topic_prefix=settings.topic_prefix + "x.")
    created = await ensure_topics(other)
    assert sorted(created) == sorted(other.topic(t.name) for t in TOPICS)


def test_broker_stops_cleanly() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_broker_dies_with_its_parent() -> None:
    """An interrupted run (parent killed with SIGKILL) leaves no orphan broker behind."""
    code = (
        "from registry.infra.kafka.broker import EmbeddedBroker\n"
        "import os, sys, time\n"
        "b = EmbeddedBroker(); b.start(); print(b.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0) until reaped by init; check its state
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] == "Z"
        except FileNotFoundError:
            return True

    await eventually(gone, 5, interval=0.05, what=f"broker {pid} outlived its parent")
