"""One batch of request records in, result records (and dead letters) out. No Kafka here.

Steps, each over the whole batch: decode (unreadable -> DLQ, plus an error result when the
request id is readable) -> dedupe by request id -> route (champion/challenger split) ->
cache lookup -> one ``predict_batch`` per served model (vectorised, groups concurrently)
-> fallback (a failed challenger gets the champion's prediction; mock only when configured)
-> result records.

Every answer is a function of the request and the registry view (routing hashes ids; the
``random`` split hashes the request id), so a request redelivered after a crash gets the same
answer and the same result id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from consumers.cache import MISSING, RecentIds, ResultCache, input_hash
from consumers.errors import (
    ModelNotActive,
    ModelNotFound,
    PredictionErrorCode,
    PredictionFailure,
    ProviderFailed,
)
from consumers.predictor.results import Outgoing, ResultWriter, error_record
from consumers.predictor.view import RegistryView
from consumers.predictor.work import Work
from consumers.providers.factory import ProviderFactory
from consumers.providers.mock import mock_output
from consumers.routing import ChampionChallengerRouter
from registry.core.errors import describe_validation_error
from registry.core.predictions import PredictionRequest
from registry.infra.settings import PredictorSettings

__all__ = ["BatchOutcome", "PredictionPipeline"]

log = logging.getLogger(__name__)

# Failures of the caller or the registry, not of a provider: never hidden behind a mock.
_NO_MOCK = frozenset(
    {
        PredictionErrorCode.MODEL_NOT_FOUND,
        PredictionErrorCode.MODEL_NOT_ACTIVE,
        PredictionErrorCode.INVALID_INPUT,
    }
)


@dataclass
class BatchOutcome:
    """What a batch produced: result records, dead letters, and the counts for the stats."""

    results: list[Outgoing] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    duplicates: int = 0


class PredictionPipeline:
    """Turns request records into result records against the registry view."""

    def __init__(
        self,
        view: RegistryView,
        factory: ProviderFactory,
        config: PredictorSettings,
        *,
        router: ChampionChallengerRouter | None = None,
        cache: ResultCache | None = None,
        recent: RecentIds | None = None,
    ) -> None:
        self.view = view
        self.factory = factory
        self.config = config
        self.router = router or ChampionChallengerRouter()
        self.cache = cache or ResultCache(config.cache_ttl_s, config.cache_max_entries)
        self.recent = recent or RecentIds(config.dedupe_max_ids)

    async def handle(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], fetched_at: float | None = None
    ) -> BatchOutcome:
        """The outcome of one batch. Raises only on a bug (the caller then goes one by one)."""
        t0 = time.perf_counter()
        fetched_at = time.monotonic() if fetched_at is None else fetched_at
        now = datetime.now(UTC).isoformat()
        outcome = BatchOutcome()
        works = self._decode(records, outcome, now)
        outcome.requests = len(works)
        if not works:
            return outcome
        await self._route(works, fetched_at)
        self._lookup_cache(works, outcome)
        await self._predict(
            [w for w in works if w.failure is None and w.output is MISSING and w.served is not None]
        )
        await self._fallback_to_champion(works)
        self._fallback_to_mock(works)
        writer = ResultWriter(now, t0)
        for w in works:
            outcome.results.append(writer.record(w))
            outcome.answered.append(w.request.id)
            if w.failure is not None:
                outcome.errors += 1
            elif w.fallback is not None:
                outcome.fallbacks += 1
        await self.factory.collect()
        return outcome

    # ------------------------------------------------------------------ decode + dedupe

    def _decode(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], outcome: BatchOutcome, now: str
    ) -> list[Work]:
        works: list[Work] = []
        batch_ids: set[str] = set()
        for record in records:
            request = self.decode(record, outcome, now)
            if request is None:
                continue
            if request.id in batch_ids or request.id in self.recent:
                outcome.duplicates += 1  # answered already; its result carries the same answer
                continue
            batch_ids.add(request.id)
            works.append(Work(record, request))
        return works

    def decode(
        self, record: ConsumerRecord[bytes, bytes], outcome: BatchOutcome, now: str
    ) -> PredictionRequest | None:
        """The request in ``record``, or None after sending it to the DLQ (with an error
        result when its id is readable)."""
        if record.value is None:
            outcome.dead.append((record, "empty message (null value)"))
            return None
        try:
            request = PredictionRequest.model_validate_json(record.value)
        except ValidationError as exc:
            reason, _ = describe_validation_error(exc)
            reason = f"invalid PredictionRequest: {reason}"
            outcome.dead.append((record, reason))
            error = error_record(record, reason, now)
            if error is not None:
                outcome.results.append(error)
                outcome.errors += 1
            return None
        if "id" not in request.model_fields_set:
            # No idempotency key given: derive one from the record's position, which a
            # redelivery of this very record shares.
            derived = f"{record.topic}/{record.partition}/{record.offset}"[-128:]
            request = request.model_copy(update={"id": derived})
        return request

    # ------------------------------------------------------------------ route

    async def _route(self, works: list[Work], fetched_at: float) -> None:
        view = self.view
        states = [view.model(w.request.model_id) for w in works]
        wait = self.config.unknown_model_wait_s
        # A model registered just before its first request: let the view catch up once.
        if wait > 0 and None in states and await view.refreshed(fetched_at, wait):
            states = [view.model(w.request.model_id) for w in works]
        route_of = self.router.route
        for w, state in zip(works, states, strict=True):
            req = w.request
            if state is None:
                w.failure = ModelNotFound(f"no model '{req.model_id}' is registered")
                continue
            route = route_of(state, view.pair(req.model_id), req.unit_id or req.id, req.id)
            w.route = route
            served = w.served = route.served
            if not served.serves:
                w.failure = ModelNotActive(
                    f"model '{served.model_id}' is {served.status}; "
                    "only active models serve predictions"
                )

    # ------------------------------------------------------------------ cache + predict

    def _lookup_cache(self, works: list[Work], outcome: BatchOutcome) -> None:
        cache = self.cache
        if not cache.enabled:
            return
        now = time.perf_counter()
        for w in works:
            if w.failure is not None or w.served is None:
                continue
            w.key = (w.served.model_id, w.served.version, input_hash(w.request.input))
            hit = cache.get(w.key)
            if hit is not MISSING:
                w.output, w.cached, w.done_at = hit, True, now
                outcome.cache_hits += 1

    async def _predict(self, works: list[Work]) -> None:
        groups: dict[str, list[Work]] = defaultdict(list)
        for w in works:
            assert w.served is not None
            groups[w.served.model_id].append(w)
        if groups:
            await asyncio.gather(*(self._predict_group(group) for group in groups.values()))

    async def _predict_group(self, group: list[Work]) -> None:
        served = group[0].served
        assert served is not None
        provider = self.factory.get_provider(served.config)
        try:
            outputs = await provider.predict_batch([w.request.input for w in group])
            if len(outputs) != len(group):
                raise ProviderFailed(
                    f"provider of '{served.model_id}' returned {len(outputs)} outputs "
                    f"for {len(group)} inputs"
                )
        except Exception as exc:  # noqa: BLE001 - an adapter bug fails its group, not the batch
            failure = (
                exc
                if isinstance(exc, PredictionFailure)
                else ProviderFailed(f"provider of '{served.model_id}': {type(exc).__name__}")
            )
            log.error(
                "provider failed a whole batch: %s",
                failure.message,
                extra={"model_id": served.model_id},
            )
            outputs = [failure] * len(group)
        done = time.perf_counter()
        cache = self.cache
        for w, out in zip(group, outputs, strict=True):
            w.done_at = done
            if isinstance(out, PredictionFailure):
                w.failure = out
            else:
                w.output, w.failure = out, None
                if w.key is not None:
                    cache.put(w.key, out)

    # ------------------------------------------------------------------ fallback

    async def _fallback_to_champion(self, works: list[Work]) -> None:
        """A challenger that failed: serve the champion's prediction, tagged as a fallback."""
        retry: list[Work] = []
        for w in works:
            route = w.route
            if (
                w.failure is None
                or route is None
                or route.variant != "challenger"
                or route.champion is None
            ):
                continue
            if not route.champion.status.serves:
                continue
            w.fallback, w.fallback_reason = (
                "champion",
                f"{w.failure.code}: {w.failure.message}"[:500],
            )
            w.served, w.failure = route.champion, None
            w.key = None
            hit = MISSING
            if self.cache.enabled:
                w.key = (
                    route.champion.model_id,
                    route.champion.version,
                    input_hash(w.request.input),
                )
                hit = self.cache.get(w.key)
            if hit is not MISSING:
                w.output, w.cached = hit, True
            else:
                retry.append(w)
        if not retry:
            return
        await self._predict(retry)
        for w in retry:
            if w.failure is not None:  # the champion failed too: an error, not a fallback
                w.failure = type(w.failure)(
                    f"{w.fallback_reason} (challenger); champion fallback: {w.failure.message}"[
                        :500
                    ]
                )
                w.fallback = w.fallback_reason = None

    def _fallback_to_mock(self, works: list[Work]) -> None:
        """Provider failures become mock predictions, only when the consumer is so configured."""
        if not self.config.mock_fallback:
            return
        for w in works:
            failure, served = w.failure, w.served
            if failure is None or served is None or failure.error_code in _NO_MOCK:
                continue
            reason = f"{failure.code}: {failure.message}"[:500]
            if w.fallback == "champion" and w.fallback_reason:
                reason = f"{w.fallback_reason}; champion: {reason}"[:500]
            w.output = mock_output(served.type, w.request.input)
            w.failure, w.fallback, w.fallback_reason, w.cached = None, "mock", reason, False
