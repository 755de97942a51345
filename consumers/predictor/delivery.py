"""Ordered delivery: wait for a batch's acknowledgements, then commit its offsets.

The consumer loop hands each handled batch (its produce futures, its dead letters, its
offsets) to the ``Committer`` and goes on with the next batch, so broker round trips overlap
with prediction work. The committer finishes batches strictly in order: all results of a
batch acknowledged (acks=all) and its dead letters written, then its offsets committed.
At most ``max_in_flight`` batches wait, which bounds memory (``put`` blocks beyond that).

When a delivery fails, that batch and every later one still queued are abandoned
(uncommitted); ``take_failure`` then tells the loop where to rewind each partition, and which
request ids to forget, so those requests are answered again. Nothing is lost; a result that
did get out before the failure is repeated with the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from consumers.predictor.pipeline import BatchOutcome
from registry.infra.kafka.dlq import send_to_dlq

__all__ = ["Committer", "Failure", "InFlight"]

log = logging.getLogger(__name__)


@dataclass
class InFlight:
    """A handled batch on its way out."""

    outcome: BatchOutcome
    first: dict[TopicPartition, int]  # where to rewind to if it fails
    next_offsets: dict[TopicPartition, int]  # what to commit once it is out
    futures: list[Any] = field(default_factory=list)


@dataclass
class Failure:
    """Where to rewind after a failed delivery, and which answered ids to forget."""

    rewind: dict[TopicPartition, int]
    request_ids: list[str]


class Committer:
    """Finishes batches in order: acks, dead letters, commit; then ``on_done(batch)``."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        on_done: Callable[[InFlight], None],
        max_in_flight: int = 2,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.on_done = on_done
        self._queue: asyncio.Queue[InFlight] = asyncio.Queue(max_in_flight)
        self._failure: Failure | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="predictor-committer")

    async def put(self, batch: InFlight) -> None:
        """Queue a batch; waits while ``max_in_flight`` batches are already queued."""
        await self._queue.put(batch)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def take_failure(self) -> Failure | None:
        """After a failure: wait until the queue is empty, then hand over the rewind points."""
        if self._failure is None:
            return None
        await self._queue.join()
        failure, self._failure = self._failure, None
        return failure

    async def drain(self) -> None:
        """Wait until every queued batch is finished (or abandoned)."""
        await self._queue.join()

    async def stop(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                if self._failure is not None:
                    self._abandon(batch)  # an earlier batch failed: this one is answered again
                    continue
                try:
                    await self._finish(batch)
                except Exception as exc:  # noqa: BLE001 - Kafka errors mostly; never stall the queue
                    log.error(
                        "delivering a batch failed (%s); it will be answered again",
                        type(exc).__name__,
                    )
                    self._failure = Failure({}, [])
                    self._abandon(batch)
                    continue
                self.on_done(batch)
            finally:
                self._queue.task_done()

    async def _finish(self, batch: InFlight) -> None:
        if batch.futures:
            await asyncio.gather(*batch.futures)
        for record, reason in batch.outcome.dead:
            await send_to_dlq(self.producer, record, reason)
        try:
            await self.consumer.commit(batch.next_offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took these partitions away: their next owner answers the batch
            # again, with the same answers. Nothing is lost.
            log.warning("offset commit refused after a rebalance (%s)", type(exc).__name__)

    def _abandon(self, batch: InFlight) -> None:
        failure = self._failure
        assert failure is not None
        for tp, offset in batch.first.items():
            failure.rewind[tp] = min(offset, failure.rewind.get(tp, offset))
        failure.request_ids.extend(batch.outcome.answered)


def offsets_of(
    data: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(first offset, next offset) per partition of a fetched batch."""
    first = {tp: recs[0].offset for tp, recs in data.items() if recs}
    following = {tp: recs[-1].offset + 1 for tp, recs in data.items() if recs}
    return first, following
