"""The one way to follow a log: ``LogFollower`` (docs/design.md#following-a-log).

A follower reads every partition of its topics with a manually assigned consumer, from
given positions (or from the start), and knows where each log ends: from ``end_offsets()``
on Apache Kafka (so a follower of an idle log is caught up without waiting for a fetch),
and from the ends that fetch responses carry on every broker (the only source on the
embedded broker, whose ``end_offsets()`` can lag; ``traits.BrokerTraits``). It reads
committed records only, so a log's end is its last stable offset. It keeps what a health
check judges: records read, lag per partition, whether it is caught up, and when it last
made progress (a batch read, or a poll that found it caught up).

What it handles so its readers need not:

- a transient broker error: logged, retried after a pause, the positions kept;
- a log that became shorter than the position read (the broker lost data, retention removed
  the position, the topic was recreated): handed to ``on_shortened`` (the monitor re-reads
  it from its start), or raised as ``LogShortened`` (the projector refuses to mix histories).

Records are the readers' business: registry events go through
``registry.core.replay.fold_records`` with a bad-record policy, here ``LogBadRecords`` for
readers that only follow (the decider's rebuild, the prediction consumer's view, the
monitor); the projector records them in ``projection_errors`` and dead-letters them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from registry.core.errors import RegistryError
from registry.core.replay import Unfolded
from registry.infra.kafka.clients import make_consumer, partitions_of, readable_end, start_client
from registry.infra.kafka.traits import broker_traits
from registry.infra.settings import Settings

__all__ = [
    "Batch",
    "FollowerStats",
    "LogBadRecords",
    "LogFollower",
    "LogShortened",
    "Shortened",
]

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord  # ConsumerRecord[bytes, bytes]; aiokafka is untyped
Batch = dict[TopicPartition, list[Record]]


@dataclass(frozen=True, slots=True)
class Shortened:
    """A partition whose log ends before the position the follower had reached."""

    tp: TopicPartition
    position: int
    high_watermark: int | None  # None: the broker answered "out of range" without one


class LogShortened(RegistryError):
    """A log is shorter than what was read from it: it was lost, truncated or recreated."""

    code = "LogShortened"

    def __init__(self, shortened: Sequence[Shortened]) -> None:
        self.shortened = list(shortened)
        where = ", ".join(
            f"{s.tp.topic}[{s.tp.partition}] at {s.position} (log end {s.high_watermark})"
            for s in shortened
        )
        super().__init__(f"the log is shorter than the position read: {where}")


@dataclass
class FollowerStats:
    """What a health check judges: progress, not mere liveness."""

    records: int = 0
    lag: int = 0
    lag_by_partition: dict[TopicPartition, int] = field(default_factory=dict)
    caught_up: bool = False
    shortened: int = 0
    broker_errors: int = 0
    last_progress_monotonic: float = field(default_factory=time.monotonic)


class LogBadRecords:
    """The bad-record policy of a reader that only follows: log it (never its bytes), count it.

    The log's writer and the projector own the record; a follower neither believes it nor
    copies it anywhere.
    """

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.unreadable = 0
        self.revision_gaps = 0

    @property
    def count(self) -> int:
        return self.unreadable + self.revision_gaps

    def __call__(self, bad: Unfolded) -> None:
        if bad.kind == "unreadable":
            self.unreadable += 1
        else:
            self.revision_gaps += 1
        r = bad.record
        log.warning(
            "%s skips %s[%d]@%d (%s): %s",
            self.reader,
            r.topic,
            r.partition,
            r.offset,
            bad.kind,
            bad.reason,
            extra={"topic": r.topic, "partition": r.partition, "offset": r.offset},
        )


OnShortened = Callable[[list[Shortened]], Awaitable[None]]


class LogFollower:
    """Follows every partition of ``topics`` (or only ``partitions`` of them).

    ``start(positions)`` connects and seeks (a partition without a position starts at its
    beginning); ``poll`` reads one batch (a reader that follows calls it in its own loop);
    ``catch_up`` reads until every (given) partition has reached its high watermark.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        name: str,
        max_records: int = 5000,
        poll_ms: int = 200,
        partitions: Sequence[int] | None = None,
        on_shortened: OnShortened | None = None,
        **consumer_overrides: Any,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.name = name
        self.max_records = max_records
        self.poll_ms = poll_ms
        self.stats = FollowerStats()
        self._only = None if partitions is None else set(partitions)
        self._on_shortened = on_shortened
        self._overrides = {"auto_offset_reset": "none", **consumer_overrides}
        self._consumer: AIOKafkaConsumer | None = None
        self._exact_ends = False  # the broker's end_offsets() can be trusted
        self._ends: dict[TopicPartition, int] = {}  # from end_offsets(), until a fetch tells
        self.partitions: list[TopicPartition] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The underlying consumer (for a guard that reads a record at an offset)."""
        if self._consumer is None:
            raise RuntimeError(f"the {self.name} follower is not started")
        return self._consumer

    async def start(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        """Connect, assign the partitions and seek to ``positions`` (else the beginning).

        Raises:
            BrokerUnavailable: Kafka could not be reached, or a topic does not exist.
        """
        consumer = make_consumer(self.settings, **self._overrides)
        await start_client(consumer, self.settings)
        try:
            tps: list[TopicPartition] = []
            for topic in self.topics:
                tps += [
                    tp
                    for tp in await partitions_of(consumer, topic)
                    if self._only is None or tp.partition in self._only
                ]
        except BaseException:
            await consumer.stop()
            raise
        self._consumer, self.partitions = consumer, tps
        consumer.assign(tps)
        traits = await broker_traits(self.settings)
        self._exact_ends = traits is not None and traits.exact_end_offsets
        await self.seek(positions or {})

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def partitions_of(self, topic: str) -> list[TopicPartition]:
        return [tp for tp in self.partitions if tp.topic == topic]

    async def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Seek every partition to its position in ``positions``, the others to their start."""
        consumer = self.consumer
        rest = [tp for tp in self.partitions if tp not in positions]
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        if rest:
            await consumer.seek_to_beginning(*rest)
        await self._learn_ends()

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self.consumer.pause(*tps)

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self.consumer.resume(*tps)

    # ------------------------------------------------------------------ reading

    async def poll(
        self, timeout_ms: int | None = None, only: Sequence[TopicPartition] | None = None
    ) -> Batch:
        """One fetch: the records read per partition (possibly none)."""
        consumer = self.consumer
        try:
            batch: Batch = await consumer.getmany(
                *(only or ()),
                timeout_ms=self.poll_ms if timeout_ms is None else timeout_ms,
                max_records=self.max_records,
            )
        except OffsetOutOfRangeError as exc:
            # A real Kafka answers a fetch beyond the log (or below its start, after
            # retention) with OffsetOutOfRange: the log is shorter than our position.
            bad = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            await self._shortened([Shortened(tp, off, None) for tp, off in bad.items()])
            return {}
        except KafkaError as exc:
            self.stats.broker_errors += 1
            log.warning("%s: fetch failed (%s); retrying", self.name, type(exc).__name__)
            await asyncio.sleep(0.5)
            return {}
        batch = {tp: recs for tp, recs in batch.items() if recs}
        shortened = await self._check_ends()
        if shortened:
            await self._shortened(shortened)
            batch = {tp: r for tp, r in batch.items() if tp not in {s.tp for s in shortened}}
        read = sum(len(r) for r in batch.values())
        self.stats.records += read
        caught_up = await self._measure(only)
        if read or caught_up:
            self.stats.last_progress_monotonic = time.monotonic()
        return batch

    async def catch_up(
        self,
        handle: Callable[[Batch], object],
        only: Sequence[TopicPartition] | None = None,
    ) -> None:
        """Read and ``handle`` batches until every partition (of ``only``) reached its end
        (offsets may have gaps: ``position >= end``). On Kafka the ends are asked first, so
        a log already read to its end costs no fetch wait; elsewhere fetch responses tell."""
        if await self._learn_ends() and self.caught_up(only):
            return
        while True:
            batch = await self.poll(only=only)
            if batch:
                result = handle(batch)
                if inspect.isawaitable(result):
                    await result
            if self.caught_up(only):
                return

    def caught_up(self, only: Sequence[TopicPartition] | None = None) -> bool:
        """Every partition (of ``only``) at its high watermark, as last measured."""
        lags = self.stats.lag_by_partition
        return all(lags.get(tp, 1) == 0 for tp in (only or self.partitions))

    # ------------------------------------------------------------------ bookkeeping

    async def _learn_ends(self) -> bool:
        """On a broker whose ``end_offsets()`` is exact, ask where every log ends now (one
        request) and measure the lags from it; False elsewhere (fetch responses tell)."""
        if not self._exact_ends:
            return False
        consumer = self.consumer
        try:
            ends = await consumer.end_offsets(self.partitions)
        except KafkaError as exc:
            log.warning("%s: end_offsets failed (%s)", self.name, type(exc).__name__)
            return False
        self._ends = {tp: int(end) for tp, end in ends.items()}
        lags = self.stats.lag_by_partition
        for tp, end in list(self._ends.items()):
            position = await consumer.position(tp)
            if position > end:  # shortened: not caught up; the next fetch finds out how
                lags.pop(tp, None)
                self._ends.pop(tp)
            else:
                lags[tp] = end - position
        self.stats.lag = sum(lags.values())
        self.stats.caught_up = self.caught_up()
        return True

    async def _measure(self, only: Sequence[TopicPartition] | None) -> bool:
        consumer = self.consumer
        lags = self.stats.lag_by_partition
        for tp in self.partitions:
            end = readable_end(consumer, tp)
            if end is None:
                end = self._ends.get(tp)
            if end is not None:
                lags[tp] = max(0, end - await consumer.position(tp))
        self.stats.lag = sum(lags.values())
        self.stats.caught_up = self.caught_up()
        return self.caught_up(only)

    async def _check_ends(self) -> list[Shortened]:
        # Invariant: a position never exceeds the high watermark of the log it was read from
        # (fetch responses carry hw >= every offset they deliver).
        consumer = self.consumer
        out = []
        for tp in self.partitions:
            hw = consumer.highwater(tp)
            if hw is not None:
                position = await consumer.position(tp)
                if position > hw:
                    out.append(Shortened(tp, position, hw))
        return out

    async def _shortened(self, shortened: list[Shortened]) -> None:
        self.stats.shortened += len(shortened)
        for tp in (s.tp for s in shortened):
            self.stats.lag_by_partition.pop(tp, None)
        if self._on_shortened is None:
            raise LogShortened(shortened)
        await self._on_shortened(shortened)
