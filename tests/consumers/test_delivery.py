"""Delivery: offsets committed only past finished records, results retried (never rewound),
and dead letters that are always written - whole, as a reference, or counted as failed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from consumers.predictor.delivery import Answer, Committer, Emitter, OffsetTracker, Slot
from consumers.predictor.results import Outgoing
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of
from registry.infra.kafka.dlq import DlqOutcome, send_to_dlq
from registry.infra.settings import Settings
from tests.helpers import eventually, read_topic

TP = TopicPartition("t", 0)


def _records(tp: TopicPartition, offsets: list[int]) -> list[Any]:
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, None, b"x", None, 0, 1, []) for o in offsets
    ]


def _track(tracker: OffsetTracker, tp: TopicPartition, offsets: list[int]) -> list[Slot]:
    window = tracker.track(tp, _records(tp, offsets))
    return [Slot(window, o) for o in offsets]


def _finish(tracker: OffsetTracker, slot: Slot) -> None:
    tracker.finish(slot.window, slot.offset)


def test_positions_advance_only_past_finished_records() -> None:
    tracker = OffsetTracker(limit=5)
    slots = _track(tracker, TP, [10, 11, 12, 13])
    assert tracker.positions([TP]) == {}  # fetched from 10: nothing to commit yet
    _finish(tracker, slots[2])  # out of order: nothing before it is finished
    _finish(tracker, slots[1])
    assert tracker.positions([TP]) == {}
    _finish(tracker, slots[0])
    assert tracker.positions([TP]) == {TP: 13}
    tracker.committed({TP: 13})
    assert tracker.positions([TP]) == {}  # nothing new to commit
    more = _track(tracker, TP, [14, 15])
    assert not tracker.full  # 3 held
    more += _track(tracker, TP, [16, 17])
    assert tracker.full  # 5 held: the fetch loop waits
    for slot in [slots[3], *more]:
        _finish(tracker, slot)
    assert not tracker.full
    assert tracker.positions([TP]) == {TP: 18}
    assert tracker.unfinished == 0
    assert tracker.positions([TopicPartition("t", 1)]) == {}  # not assigned: not committed


def test_a_partition_fetched_again_from_earlier_starts_a_fresh_window() -> None:
    tracker = OffsetTracker(limit=100)
    old = _track(tracker, TP, [5, 6, 7])
    again = _track(tracker, TP, [5, 6])  # a rebalance handed it back
    assert tracker.positions([TP]) == {}
    for slot in again:
        _finish(tracker, slot)
    assert tracker.positions([TP]) == {TP: 7}
    for slot in old:  # the old window's slots still finish, harmlessly
        _finish(tracker, slot)
    assert tracker.unfinished == 0


async def test_the_committer_commits_what_is_finished(settings: Settings) -> None:
    consumer = make_consumer(settings, group_id=settings.topic_prefix + "committer-test")
    await consumer.start()
    try:
        tp = (await partitions_of(consumer, settings.topic("predictions.requests")))[0]
        consumer.assign([tp])
        tracker = OffsetTracker(limit=100)
        committer = Committer(consumer, tracker, interval_s=0.01)
        tracker.on_progress = committer.kick
        committer.start()
        slots = _track(tracker, tp, list(range(10)))
        for slot in slots[1:]:
            _finish(tracker, slot)
        await asyncio.sleep(0.1)
        assert await consumer.committed(tp) is None  # offset 0 is not finished
        _finish(tracker, slots[0])
        await eventually(lambda: committer.commits >= 1)
        assert await consumer.committed(tp) == 10
        await committer.stop()
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- the emitter


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, *, key: Any, value: bytes, timestamp: Any, headers: Any) -> object:
        if len(self.values) >= 3:
            return None
        self.values.append(value)
        return object()


class FakeProducer:
    """A producer whose broker refuses values over ``max_bytes`` (as too large) and fails
    the first ``fail_first`` sends (as timeouts)."""

    def __init__(self, *, max_bytes: int = 1 << 30, fail_first: int = 0) -> None:
        self.max_bytes = max_bytes
        self.fail_first = fail_first
        self.sent: list[bytes] = []
        self.dlq: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    def _future(self, exc: Exception | None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
        return fut

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        if self.fail_first:
            self.fail_first -= 1
            return self._future(KafkaTimeoutError())
        if any(len(v) > self.max_bytes for v in batch.values):
            return self._future(MessageSizeTooLargeError())
        self.sent.extend(batch.values)
        return self._future(None)

    async def send(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> Any:
        if self.fail_first:
            self.fail_first -= 1
            raise KafkaTimeoutError()
        if value is not None and len(value) > self.max_bytes:
            raise MessageSizeTooLargeError()
        self.dlq.append((key, value, dict(headers)))
        return self._future(None)


def _answer(tracker: OffsetTracker, i: int, value: bytes) -> Answer:
    window = tracker.track(TP, _records(TP, [i]))
    return Answer(Outgoing(b"k", value, 0, f"r{i}"), window, i, f"r{i}")


def _result(i: int, output: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "PredictionResult",
            "id": f"id{i}",
            "request_id": f"r{i}",
            "requested_model_id": "m",
            "output": output,
        }
    )


async def _emit(producer: FakeProducer, values: list[bytes]) -> tuple[list[str], Emitter]:
    tracker = OffsetTracker(limit=100)
    acked: list[str] = []
    emitter = Emitter(
        producer,  # type: ignore[arg-type]
        "results",
        lambda out: 0,
        lambda answers: acked.extend(a.request_id or "" for a in answers),
        lambda slot, outcome, rid: None,
        excerpt_bytes=1024,
        backoff_s=0.001,
    )
    emitter.start()
    emitter.answer([_answer(tracker, i, v) for i, v in enumerate(values)])
    await eventually(lambda: len(acked) == len(values))
    await emitter.close(timeout=1.0)
    return acked, emitter


async def test_a_failed_send_is_retried_without_predicting_again() -> None:
    producer = FakeProducer(fail_first=2)
    values = [_result(i, i) for i in range(7)]
    acked, emitter = await _emit(producer, values)
    assert sorted(acked) == sorted(f"r{i}" for i in range(7))
    assert sorted(producer.sent) == sorted(values)  # each result exactly once
    assert emitter.retries >= 2


async def test_a_result_refused_as_too_large_is_replaced_by_an_error_result() -> None:
    producer = FakeProducer(max_bytes=200)
    values = [_result(0, 1), _result(1, "x" * 500), _result(2, 2)]
    acked, emitter = await _emit(producer, values)
    assert sorted(acked) == ["r0", "r1", "r2"]
    assert emitter.replaced == 1
    replaced = [orjson.loads(v) for v in producer.sent if b'"r1"' in v]
    assert len(replaced) == 1
    assert replaced[0]["error"]["code"] == "ProviderBadResponse"
    assert "output" not in replaced[0]
    assert {_result(0, 1), _result(2, 2)} <= set(producer.sent)


# --------------------------------------------------------------------------- the DLQ


def _record(value: bytes | None, key: bytes | None = b"k", topic: str = "src") -> Any:
    return ConsumerRecord(
        topic, 2, 7, 0, 0, key, value, None, len(key or b""), len(value or b""), [("type", b"X")]
    )


async def test_a_small_dead_letter_is_copied_whole() -> None:
    producer = FakeProducer()
    outcome = await send_to_dlq(producer, _record(b"{bad"), "invalid: why")  # type: ignore[arg-type]
    assert outcome is DlqOutcome.COPIED
    ((key, value, headers),) = producer.dlq
    assert (key, value) == (b"k", b"{bad")
    assert headers["type"] == b"X"  # the original headers are kept
    assert headers["dlq.form"] == b"copy"
    assert headers["dlq.reason"] == b"invalid: why"
    assert (headers["dlq.source.topic"], headers["dlq.source.partition"]) == (b"src", b"2")
    assert headers["dlq.source.offset"] == b"7"


async def test_a_large_dead_letter_is_a_reference_with_a_marked_excerpt() -> None:
    producer = FakeProducer()
    big = b"y" * 5000
    outcome = await send_to_dlq(
        producer,  # type: ignore[arg-type]
        _record(big, key=b"K" * 5000),
        "too big\nreally",
        excerpt_bytes=100,
    )
    assert outcome is DlqOutcome.REFERENCE
    ((key, value, headers),) = producer.dlq
    assert key is None  # a 5 kB key is left out, its size said
    assert headers["dlq.source.key.bytes"] == b"5000"
    assert headers["dlq.form"] == b"reference"
    assert headers["dlq.excerpt.bytes"] == b"100"
    assert headers["dlq.source.bytes"] == b"%d" % (5000 + 5000 + len("type") + 1)
    assert headers["dlq.reason"] == b"too big really"  # control characters are blanked
    assert "type" not in headers  # the original headers are dropped
    assert value is not None
    assert value.startswith(b"DLQ-REFERENCE: excerpt of the first 100 of 5000 bytes")
    assert value.endswith(b"\n" + b"y" * 100)


async def test_a_dead_letter_the_broker_refuses_as_too_large_becomes_a_reference() -> None:
    producer = FakeProducer(max_bytes=300)
    outcome = await send_to_dlq(
        producer,  # type: ignore[arg-type]
        _record(b"z" * 1000),
        "r",
        excerpt_bytes=2000,  # fits the excerpt limit, not the broker's
    )
    assert outcome is DlqOutcome.REFERENCE
    ((_, value, headers),) = producer.dlq
    assert headers["dlq.excerpt.bytes"] == b"0"  # 2000, then 1024, then 0 bytes tried
    assert value is not None
    assert value.startswith(b"DLQ-REFERENCE")


async def test_a_dead_letter_that_cannot_be_written_is_reported_not_raised() -> None:
    producer = FakeProducer(fail_first=100)
    outcome = await send_to_dlq(
        producer,  # type: ignore[arg-type]
        _record(b"v"),
        "r",
        retries=3,
        backoff_s=0.001,
    )
    assert outcome is DlqOutcome.FAILED
    assert producer.fail_first == 96  # 4 attempts
    recovering = FakeProducer(fail_first=2)
    assert (
        await send_to_dlq(recovering, _record(b"v"), "r", backoff_s=0.001)  # type: ignore[arg-type]
        is DlqOutcome.COPIED
    )


async def test_a_one_megabyte_dead_letter_on_the_real_broker(settings: Settings) -> None:
    producer = make_producer(settings)  # the default 1 MiB request limit
    await producer.start()
    try:
        record = _record(b"q" * (1 << 20), topic=settings.topic("predictions.outcomes"), key=None)
        outcome = await send_to_dlq(producer, record, "over the limit", excerpt_bytes=10 << 20)
    finally:
        await producer.stop()
    assert outcome is DlqOutcome.REFERENCE  # refused by the producer, written as a reference
    (dead,) = await read_topic(settings, "predictions.outcomes.dlq")
    assert dict(dead.headers)["dlq.excerpt.bytes"] == b"1024"
