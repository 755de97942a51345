"""The prediction consumer's own view of the registry, folded from ``registry.events``.

It reads the whole log from offset 0 at start (no group: every predictor holds every
model), then follows it, through the shared ``LogFollower`` and the one fold
(``fold_records``). An event that does not decode, whose hash-chain link does not match
(altered, inserted, dropped), or whose revision is not its model's next (a stray writer or
a lost event), is logged and skipped, never believed: a forged event cannot make a model
serve; the registry's
DLQ belongs to its writer, so nothing is re-published from here.

A request never waits on a database: ``model()`` and ``pair()`` are dict lookups. A request
naming a model the view has not seen yet may wait once per batch for the view to catch up
(``refreshed``), so a model registered a moment before its first request is found.
"""

from __future__ import annotations

import asyncio
import logging
import time

from consumers.routing import TestPair
from registry.core.chain import Chain
from registry.core.replay import fold_records
from registry.core.state import ModelState, RegistryState
from registry.infra.kafka.follower import Batch, LogBadRecords, LogFollower
from registry.infra.settings import Settings

__all__ = ["RegistryView"]

log = logging.getLogger(__name__)


class RegistryView:
    """Models and running A/B tests, as of the last event read."""

    def __init__(self, settings: Settings, *, poll_ms: int = 50) -> None:
        self.settings = settings
        self.state = RegistryState()
        self.chain = Chain()  # an event whose hash-chain link does not match is not believed
        self.applied = 0
        self.skipped = LogBadRecords("prediction consumer's registry view")
        self.caught_up_at = 0.0  # time.monotonic() of the last read that reached the end
        self._pairs: dict[str, TestPair] = {}
        self._round = asyncio.Event()
        self._follower = LogFollower(
            settings,
            [settings.topic("registry.events")],
            name="registry view",
            poll_ms=poll_ms,
        )
        self._started = False

    # ------------------------------------------------------------------ reading

    def model(self, model_id: str) -> ModelState | None:
        """The live model ``model_id`` (not unregistered), or None."""
        state = self.state.models.get(model_id)
        return state if state is not None and state.live else None

    def resolve(self, name: str) -> ModelState | None:
        """The live model that serves what is addressed to ``name`` (a model id or an alias),
        following promotions (``RegistryState.resolve``), or None."""
        state = self.state.resolve(name)[0]
        return state if state is not None and state.live else None

    def pair(self, model_id: str) -> TestPair | None:
        """The running test ``model_id`` takes part in (as champion or challenger), or None."""
        return self._pairs.get(model_id)

    # ------------------------------------------------------------------ folding

    def apply(self, batch: Batch) -> int:
        """Fold a batch in; returns how many events were applied (the rest are skipped)."""
        applied = 0
        for records in batch.values():
            applied += fold_records(
                records, self.state, on_bad=self.skipped, chain=self.chain
            ).applied
        if applied:
            self.applied += applied
            self._pairs = self._index()
        return applied

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
            if not test.shadow:  # a shadow challenger addressed by its id answers as itself
                pairs[state.model_id] = pair
            pairs[champion.model_id] = pair
        return pairs

    # ------------------------------------------------------------------ Kafka

    async def start(self) -> None:
        """Read ``registry.events`` from offset 0 to its end."""
        await self._follower.start()
        self._started = True
        await self._follower.catch_up(self.apply)
        self._mark_caught_up()
        log.info(
            "registry view caught up",
            extra={"models": len(self.state.models), "events": self.applied},
        )

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply new events until ``stop`` is set."""
        follower = self._follower
        while not stop.is_set():
            self.apply(await follower.poll())
            if follower.caught_up():
                self._mark_caught_up()

    def _mark_caught_up(self) -> None:
        self.caught_up_at = time.monotonic()
        self._round.set()
        self._round = asyncio.Event()

    async def refreshed(self, since: float, timeout: float) -> bool:
        """Wait until the view has caught up after ``since`` (monotonic); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.caught_up_at <= since:
            left = deadline - time.monotonic()
            if left <= 0 or not self._started:
                return False
            try:
                await asyncio.wait_for(self._round.wait(), left)
            except TimeoutError:
                return False
        return True

    async def stop(self) -> None:
        self._started = False
        await self._follower.stop()
