"""The prediction consumer's own view of the registry, folded from ``registry.events``.

It reads the whole log from offset 0 at start (no group: every predictor holds every
model), then follows it. Each event goes through ``RegistryState.apply``, the same fold as
the decider and the projector. An event that does not decode, or whose revision is not its
model's next (``RevisionGap``: a stray writer or a lost event), is logged and skipped, never
believed; the registry's DLQ belongs to its writer, so nothing is re-published from here.

A request never waits on a database: ``model()`` and ``pair()`` are dict lookups. A request
naming a model the view has not seen yet may wait once per batch for the view to catch up
(``refreshed``), so a model registered a moment before its first request is found.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumers.routing import TestPair
from registry import codec
from registry.domain.errors import DecodeError
from registry.domain.rules import ModelState, RegistryState, RevisionGap
from registry.kafka.clients import make_consumer, partitions_of, read_until_caught_up, start_client
from registry.settings import Settings

__all__ = ["RegistryView"]

log = logging.getLogger(__name__)


class RegistryView:
    """Models and running A/B tests, as of the last event read."""

    def __init__(self, settings: Settings, *, poll_ms: int = 50) -> None:
        self.settings = settings
        self.state = RegistryState()
        self.poll_ms = poll_ms
        self.applied = 0
        self.skipped = 0
        self.caught_up_at = 0.0  # time.monotonic() of the last read that reached the end
        self._pairs: dict[str, TestPair] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._round = asyncio.Event()

    # ------------------------------------------------------------------ reading

    def model(self, model_id: str) -> ModelState | None:
        """The live model ``model_id`` (not unregistered), or None."""
        state = self.state.models.get(model_id)
        return state if state is not None and state.live else None

    def pair(self, model_id: str) -> TestPair | None:
        """The running test ``model_id`` takes part in (as champion or challenger), or None."""
        return self._pairs.get(model_id)

    # ------------------------------------------------------------------ folding

    def apply_records(self, records: list[ConsumerRecord[bytes, bytes]]) -> int:
        """Fold records in; returns how many were applied (the rest are logged and skipped)."""
        applied = 0
        for record in records:
            try:
                self.state.apply(codec.decode_event(record.value))
                applied += 1
            except DecodeError as exc:
                self._skip(record, f"unreadable event: {exc.reason}")
            except RevisionGap as exc:
                self._skip(record, f"revision gap ({exc}); event not believed")
        if applied:
            self.applied += applied
            self._pairs = self._index()
        return applied

    def _skip(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        self.skipped += 1
        log.warning(
            "skipped a registry event: %s",
            reason,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )

    def _index(self) -> dict[str, TestPair]:
        pairs: dict[str, TestPair] = {}
        for state in self.state.models.values():
            test = state.ab_test
            if test is None or not state.live:
                continue
            champion = self.model(test.champion_model_id)
            if champion is None:
                continue
            pair = TestPair(challenger=state, champion=champion)
            pairs[state.model_id] = pair
            pairs[champion.model_id] = pair
        return pairs

    # ------------------------------------------------------------------ Kafka

    async def start(self) -> None:
        """Read ``registry.events`` from offset 0 to its end."""
        consumer = make_consumer(self.settings, fetch_max_wait_ms=self.settings.fetch_max_wait_ms)
        await start_client(consumer, self.settings)
        self._consumer = consumer
        self._partitions = await partitions_of(consumer, self.settings.topic("registry.events"))
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)

        def fold(tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
            self.apply_records(records)

        await read_until_caught_up(consumer, self._partitions, fold)
        self._mark_caught_up()
        log.info(
            "registry view caught up",
            extra={"models": len(self.state.models), "events": self.applied},
        )

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply new events until ``stop`` is set."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        while not stop.is_set():
            try:
                batch = await consumer.getmany(
                    *self._partitions, timeout_ms=self.poll_ms, max_records=5000
                )
            except KafkaError as exc:  # a broker hiccup: the position is kept, try again
                log.warning("reading registry.events failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                self.apply_records(records)
            if await self._at_end(consumer):
                self._mark_caught_up()

    async def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        for tp in self._partitions:
            hw = consumer.highwater(tp)
            if hw is None or await consumer.position(tp) < hw:
                return False
        return True

    def _mark_caught_up(self) -> None:
        self.caught_up_at = time.monotonic()
        self._round.set()
        self._round = asyncio.Event()

    async def refreshed(self, since: float, timeout: float) -> bool:
        """Wait until the view has caught up after ``since`` (monotonic); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.caught_up_at <= since:
            left = deadline - time.monotonic()
            if left <= 0 or self._consumer is None:
                return False
            try:
                await asyncio.wait_for(self._round.wait(), left)
            except TimeoutError:
                return False
        return True

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
