"""The ordered committer: acks, then commit, in batch order; a failed delivery abandons the
batches behind it and says where to rewind."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from consumers.predictor.delivery import Committer, InFlight
from consumers.predictor.pipeline import BatchOutcome
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of
from registry.infra.settings import Settings


def _batch(
    tp: TopicPartition, first: int, last: int, ids: list[str], futures: list[Any]
) -> InFlight:
    return InFlight(BatchOutcome(answered=ids), {tp: first}, {tp: last + 1}, futures)


async def test_batches_finish_in_order_and_a_failure_rewinds(settings: Settings) -> None:
    producer = make_producer(settings)
    consumer = make_consumer(settings, group_id=settings.topic_prefix + "committer-test")
    await producer.start()
    await consumer.start()
    try:
        tp = (await partitions_of(consumer, settings.topic("predictions.requests")))[0]
        consumer.assign([tp])
        topic = settings.topic("predictions.results")
        for i in range(30):
            await producer.send_and_wait(
                settings.topic("predictions.requests"), b"x%d" % i, partition=0
            )
        done: list[list[str]] = []
        committer = Committer(
            consumer, producer, lambda b: done.append(b.outcome.answered), max_in_flight=2
        )
        committer.start()
        ok = [await producer.send(topic, b"result-1", partition=0)]
        await committer.put(_batch(tp, 0, 9, ["a"], ok))
        await committer.drain()
        assert done == [["a"]]
        assert await consumer.committed(tp) == 10

        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(KafkaTimeoutError())
        await committer.put(_batch(tp, 10, 19, ["b"], [failed]))
        await committer.put(
            _batch(tp, 20, 29, ["c"], [await producer.send(topic, b"result-3", partition=0)])
        )
        await committer.drain()
        assert committer.failed
        failure = await committer.take_failure()
        assert failure is not None
        assert failure.rewind == {tp: 10}
        assert failure.request_ids == ["b", "c"]
        assert done == [["a"]]
        assert await consumer.committed(tp) == 10
        assert not committer.failed
        assert await committer.take_failure() is None

        await committer.put(
            _batch(tp, 10, 29, ["b", "c"], [await producer.send(topic, b"again", partition=0)])
        )
        await committer.stop()
        assert done == [["a"], ["b", "c"]]
        assert await consumer.committed(tp) == 30
    finally:
        await consumer.stop()
        await producer.stop()
