"""Delivery: results and dead letters out, offsets committed only past finished records.

Requests finish out of order (each model has its own lane), so commits follow an
``OffsetTracker`` (``consumers.predictor.offsets``): every fetched record holds a ``Slot`` in
its partition's window until it is finished - its result acknowledged (acks=all), its dead
letter written (or given up on, counted as ``dlq_failed``), or, for a duplicate, its
original's result acknowledged. The
position committed for a partition is its first unfinished offset, so a crash at any point
loses nothing: whatever was not finished is fetched and answered again (with the same answer
and result id), and nothing finished before the committed position is.

The ``Emitter`` produces results per partition with ``send_batch`` and never gives up on one:
a batch that fails is sent again with backoff (the same bytes, without predicting again);
one the broker refuses as too large is split, and a single result still too large is
replaced by a small error result. Dead letters go through ``send_to_dlq`` (retried, never
raising). The ``Committer`` commits the advanced positions, coalescing while a commit is in
flight. At most ``limit`` records are in the tracker: beyond that the fetch loop waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from consumers.predictor.offsets import OffsetTracker, PartitionWindow, Slot
from consumers.predictor.results import HEADERS, Outgoing, too_large_result
from registry.infra.kafka.dlq import DlqOutcome, send_to_dlq

__all__ = ["Answer", "Committer", "Emitter", "OffsetTracker", "PartitionWindow", "Slot"]

log = logging.getLogger(__name__)

_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class Committer:
    """Commits the tracker's positions as they advance (one commit in flight at a time)."""

    def __init__(
        self, consumer: AIOKafkaConsumer, tracker: OffsetTracker, *, interval_s: float = 0.1
    ) -> None:
        self.consumer = consumer
        self.tracker = tracker
        self.interval_s = interval_s
        self.commits = 0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="predictor-committer")

    async def stop(self) -> None:
        """Stop, after a last commit of what is finished."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.commit()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not await self.commit():
                self._dirty.set()  # try again after the pause
            await asyncio.sleep(self.interval_s)

    async def commit(self) -> bool:
        """Commit what advanced; False when the broker could not take it (tried again)."""
        positions = self.tracker.positions(self.consumer.assignment())
        if not positions:
            return True
        try:
            await self.consumer.commit(positions)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took these partitions away: their next owner answers the records
            # past the last commit again, with the same answers. Nothing is lost.
            log.warning("offset commit refused after a rebalance (%s)", type(exc).__name__)
            return True
        except KafkaError as exc:
            log.warning("offset commit failed (%s); trying again", type(exc).__name__)
            return False
        self.tracker.committed(positions)
        self.commits += 1
        return True


class Answer(NamedTuple):
    """A result on its way out, with what its acknowledgement finishes (its record's slot,
    ``window`` and ``offset``) and counts."""

    out: Outgoing
    window: PartitionWindow
    offset: int
    request_id: str | None  # remembered for dedupe once acknowledged (None: not deduped)
    error: bool = False
    fallback: bool = False
    cached: bool = False


class Emitter:
    """Produces results (batched per partition) and dead letters; reports what got out."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partition_of: Callable[[Outgoing], int],
        on_acked: Callable[[list[Answer]], None],
        on_dead: Callable[[Slot, DlqOutcome, str | None], None],
        *,
        excerpt_bytes: int,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.partition_of = partition_of
        self.on_acked = on_acked
        self.on_dead = on_dead
        self.excerpt_bytes = excerpt_bytes
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retries = 0  # sends tried again
        self.replaced = 0  # results too large for the broker, replaced by an error result
        self._pending: dict[int, list[Answer]] = {}  # partition -> answers not yet handed over
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def start(self) -> None:
        """Nothing to start: a sender task runs per partition while it has answers."""

    def answer(self, answers: list[Answer]) -> None:
        """Queue results; each partition's sender hands them to the producer in batches,
        taking everything queued for its partition each time (a partition waits for its
        previous batch to drain, not for the other partitions)."""
        pending = self._pending
        partition_of = self.partition_of
        woken: set[int] = set()
        for a in answers:
            try:
                partition = partition_of(a.out)
            except Exception:  # noqa: BLE001 - never lose an answer to a partitioner bug
                partition = 0
            queue = pending.get(partition)
            if queue is None:
                queue = pending[partition] = []
                woken.add(partition)
            queue.append(a)
        for partition in woken:
            if partition not in self._senders:
                task = asyncio.create_task(self._send(partition), name=f"results[{partition}]")
                self._senders[partition] = task

    def dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        slot: Slot,
        request_id: str | None = None,
    ) -> None:
        """Write ``record`` to the DLQ (in the background); ``on_dead`` says how it went."""
        self._spawn(self._dead_letter(record, reason, slot, request_id))

    async def close(self, timeout: float) -> None:
        """Let queued sends finish for at most ``timeout`` s, then stop trying (what is not
        acknowledged stays uncommitted: it is answered again after a restart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._pending or self._senders or self._tasks) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self._closing = True
        tasks = [*self._tasks, *self._senders.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        slot: Slot,
        request_id: str | None,
    ) -> None:
        outcome = await send_to_dlq(self.producer, record, reason, excerpt_bytes=self.excerpt_bytes)
        self.on_dead(slot, outcome, request_id)

    async def _send(self, partition: int) -> None:
        try:
            while True:
                items = self._pending.pop(partition, None)
                if not items:
                    return
                await self._submit(partition, items)
        finally:
            self._senders.pop(partition, None)
            if self._pending.get(partition) and not self._closing:  # raced in at the end
                self._senders[partition] = asyncio.create_task(self._send(partition))

    async def _submit(self, partition: int, items: list[Answer]) -> None:
        """Hand ``items`` to the producer in batches; each batch is awaited in a task."""
        producer = self.producer
        start = 0
        while start < len(items):
            batch = producer.create_batch()
            end = start
            while end < len(items):
                out = items[end].out
                if batch.append(key=out.key, value=out.value, timestamp=None, headers=HEADERS):
                    end += 1
                elif end == start:  # cannot happen (a first record always fits): be safe
                    end += 1
                    break
                else:
                    break
            chunk = items[start:end]
            start = end
            try:
                fut = await producer.send_batch(batch, self.topic, partition=partition)
            except Exception as exc:  # noqa: BLE001 - retried below, never lost
                self._spawn(self._retry(partition, chunk, exc, 0))
                continue
            self._spawn(self._acked(fut, partition, chunk))

    async def _acked(self, fut: Any, partition: int, items: list[Answer]) -> None:
        try:
            await fut
        except Exception as exc:  # noqa: BLE001 - retried, never lost
            await self._retry(partition, items, exc, 0)
            return
        self.on_acked(items)

    async def _retry(
        self, partition: int, items: list[Answer], exc: Exception, attempt: int
    ) -> None:
        """Send ``items`` again until they get out (or the emitter closes)."""
        while not self._closing:
            self.retries += 1
            if isinstance(exc, _TOO_LARGE):
                if len(items) > 1:  # one of them is too large: each on its own
                    for item in items:
                        self._spawn(self._retry_one(partition, item))
                    return
                items = [self._shrunk(items[0])]
            else:
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                log.warning(
                    "producing %d result(s) failed (%s); trying again in %.2fs",
                    len(items),
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
            attempt += 1
            try:
                fut = await self._send_one_batch(partition, items)
                await fut
            except Exception as again:  # noqa: BLE001
                exc = again
                continue
            self.on_acked(items)
            return

    async def _retry_one(self, partition: int, item: Answer) -> None:
        try:
            fut = await self._send_one_batch(partition, [item])
            await fut
        except Exception as exc:  # noqa: BLE001
            await self._retry(partition, [item], exc, 0)
            return
        self.on_acked([item])

    async def _send_one_batch(self, partition: int, items: list[Answer]) -> Any:
        batch = self.producer.create_batch()
        for item in items:
            batch.append(key=item.out.key, value=item.out.value, timestamp=None, headers=HEADERS)
        return await self.producer.send_batch(batch, self.topic, partition=partition)

    def _shrunk(self, item: Answer) -> Answer:
        self.replaced += 1
        log.error(
            "a result was refused as too large (%d bytes); sending an error result instead",
            len(item.out.value),
        )
        return item._replace(out=too_large_result(item.out), error=True)
