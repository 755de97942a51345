"""``LogFollower`` against a real broker: positions, catching up, lag, shortened logs."""

from __future__ import annotations

import pytest

from registry.infra.kafka.clients import make_producer
from registry.infra.kafka.follower import Batch, LogFollower, LogShortened, Shortened
from registry.infra.settings import Settings


async def _produce(settings: Settings, topic: str, n: int) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(settings.topic(topic), f"v{i}".encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


async def _read(follower: LogFollower) -> list[bytes]:
    seen: list[bytes] = []

    def keep(batch: Batch) -> None:
        for records in batch.values():
            seen.extend(r.value for r in records)

    await follower.catch_up(keep)
    return seen


async def test_catches_up_from_the_start_or_from_a_position(settings: Settings) -> None:
    await _produce(settings, "registry.events", 30)
    topic = settings.topic("registry.events")
    follower = LogFollower(settings, [topic], name="test")
    await follower.start()
    try:
        assert await _read(follower) == [f"v{i}".encode() for i in range(30)]
        assert follower.stats.records == 30
        assert (follower.stats.lag, follower.stats.caught_up) == (0, True)
    finally:
        await follower.stop()
    (tp,) = follower.partitions
    again = LogFollower(settings, [topic], name="test")
    await again.start({tp: 20})
    try:
        assert await _read(again) == [f"v{i}".encode() for i in range(20, 30)]
    finally:
        await again.stop()


async def test_lag_is_what_remains_behind(settings: Settings) -> None:
    await _produce(settings, "registry.events", 30)
    follower = LogFollower(
        settings, [settings.topic("registry.events")], name="test", max_records=5
    )
    await follower.start()
    try:
        read = 0
        while not read:
            read = sum(len(r) for r in (await follower.poll()).values())
        assert read <= 5
        assert follower.stats.lag == 30 - read
        assert not follower.caught_up()
    finally:
        await follower.stop()


async def test_catch_up_on_empty_partitions_terminates(settings: Settings) -> None:
    topics = [settings.topic("registry.replies"), settings.topic("predictions.results")]
    follower = LogFollower(settings, topics, name="test")
    await follower.start()
    try:
        assert await _read(follower) == []
        assert len(follower.partitions) == 1 + settings.prediction_partitions
        assert follower.caught_up()
    finally:
        await follower.stop()


async def test_a_log_shorter_than_the_position_is_raised_or_handed_over(
    settings: Settings,
) -> None:
    """A position the log no longer reaches (lost, truncated, recreated) is never skipped
    silently: raised as ``LogShortened``, or handed to ``on_shortened``."""
    await _produce(settings, "registry.events", 3)
    topic = settings.topic("registry.events")
    probe = LogFollower(settings, [topic], name="probe")
    await probe.start()
    (tp,) = probe.partitions
    await probe.stop()

    strict = LogFollower(settings, [topic], name="strict")
    await strict.start({tp: 100})
    try:

        async def poll_until_it_raises() -> None:
            for _ in range(50):
                await strict.poll(50)

        with pytest.raises(LogShortened, match=r"at 100") as raised:
            await poll_until_it_raises()
        (shortened,) = raised.value.shortened
        assert (shortened.tp, shortened.position) == (tp, 100)
        assert shortened.high_watermark in (3, None)  # None: "out of range" (a real Kafka)
    finally:
        await strict.stop()

    handed: list[Shortened] = []

    async def restart(shortened: list[Shortened]) -> None:
        handed.extend(shortened)
        await lenient.seek({s.tp: 0 for s in shortened})

    lenient = LogFollower(settings, [topic], name="lenient", on_shortened=restart)
    await lenient.start({tp: 100})
    try:
        assert await _read(lenient) == [b"v0", b"v1", b"v2"]  # read again from its start
        assert [(s.tp, s.position) for s in handed] == [(tp, 100)]
        assert lenient.stats.shortened == 1
    finally:
        await lenient.stop()
