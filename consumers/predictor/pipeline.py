"""What happens to one request, step by step. No Kafka here (the consumer owns the loop).

``read`` (limits on the raw bytes, then decoding; a refusal is a reason that never quotes
the record) -> ``route`` (champion/challenger split; False for a model the view does not
know yet) -> ``lookup_cache`` -> ``predict_group`` (one ``predict_batch`` per group of the
same served model, in that model's lane) -> ``fallback_to_champion`` (a failed challenger's
requests go to the champion's lane) -> ``fallback_to_mock`` (only when configured).

Every answer is a function of the request and the registry view (routing hashes ids; the
``random`` split hashes the request id), so a request redelivered after a crash gets the same
answer and the same result id. None of these steps lets an exception escape for one
request's sake: a provider that raises fails its group's requests (``ProviderFailed``), an
input the cache cannot hash is simply not cached.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka import ConsumerRecord

from consumers.cache import MISSING, RecentIds, ResultCache, input_hash
from consumers.errors import (
    ModelNotActive,
    ModelNotFound,
    PredictionErrorCode,
    PredictionFailure,
    ProviderFailed,
)
from consumers.predictor.fastrequest import Request, decode
from consumers.predictor.view import RegistryView
from consumers.predictor.work import Work
from consumers.providers.factory import ProviderFactory
from consumers.providers.mock import mock_output
from consumers.routing import ChampionChallengerRouter
from registry.core.limits import over_limits
from registry.core.state import ModelState
from registry.infra.settings import LimitSettings, PredictorSettings

__all__ = ["PredictionPipeline", "internal_error"]

log = logging.getLogger(__name__)

# Failures of the caller or the registry, not of a provider: never hidden behind a mock.
_NO_MOCK = frozenset(
    {
        PredictionErrorCode.MODEL_NOT_FOUND,
        PredictionErrorCode.MODEL_NOT_ACTIVE,
        PredictionErrorCode.INVALID_INPUT,
    }
)


ISOLATE_CALLS = 32
"""Extra ``predict_batch`` calls a group may take to isolate the inputs that fail it."""
_ISOLATED = frozenset(
    {
        PredictionErrorCode.INVALID_INPUT,
        PredictionErrorCode.PROVIDER_BAD_RESPONSE,
        PredictionErrorCode.PROVIDER_FAILED,
    }
)


def _shared_failure(outputs: list[Any]) -> bool:
    """Every output is the same failure object, of a kind one bad input can cause."""
    first = outputs[0] if outputs else None
    if not isinstance(first, PredictionFailure) or first.transient:
        return False
    return first.error_code in _ISOLATED and all(o is first for o in outputs)


def internal_error(w: Work, step: str, exc: Exception) -> None:
    """``w`` fails with ``ProviderFailed`` after an unexpected error in ``step`` (logged)."""
    log.error("%s failed for one request (%s)", step, type(exc).__name__)
    w.failure = ProviderFailed(f"internal error in {step}: {type(exc).__name__}")
    w.done_at = w.done_at or time.perf_counter()


class PredictionPipeline:
    """Turns request records into answered ``Work`` against the registry view."""

    def __init__(
        self,
        view: RegistryView,
        factory: ProviderFactory,
        config: PredictorSettings,
        *,
        limits: LimitSettings | None = None,
        router: ChampionChallengerRouter | None = None,
        cache: ResultCache | None = None,
        recent: RecentIds | None = None,
    ) -> None:
        self.view = view
        self.factory = factory
        self.config = config
        self.limits = limits or LimitSettings()
        self.router = router or ChampionChallengerRouter()
        self.cache = cache or ResultCache(config.cache_ttl_s, config.cache_max_entries)
        self.recent = recent or RecentIds(config.dedupe_max_ids)
        # Seconds per request of each model's predictions (a moving average, by model id and
        # version): the cache is used for a model only where it pays for itself.
        self.item_cost: dict[tuple[str, str], float] = {}
        self._cache_min_item_s = config.cache_min_item_us / 1e6

    # ------------------------------------------------------------------ read

    def read(self, record: ConsumerRecord[bytes, bytes]) -> Request | str:
        """The request in ``record``, or why it is refused (never quoting the record).

        Decoded by ``fastrequest.decode``: orjson and plain checks for the usual shape, the
        pydantic model for anything else (and for every refusal)."""
        value = record.value
        if value is None:
            return "empty message (null value)"
        limits = self.limits
        # over_limits' own quick test, inline (this is the hot path): within the size, and
        # fewer opening brackets than the depth limit, cannot be over a limit.
        if (
            len(value) > limits.request_bytes
            or value.count(b"{") + value.count(b"[") > limits.json_depth
        ):
            over = over_limits(value, limits.request_bytes, limits.json_depth)
            if over is not None:
                return f"PredictionRequest refused: {over}"
        return decode(value, record.topic, record.partition, record.offset)

    # ------------------------------------------------------------------ route + cache

    def route(self, works: list[Work]) -> list[Work]:
        """Route ``works``; returns those whose model the view does not know (yet), with
        nothing set. An error routing one request fails that request only.

        What a request's model name leads to (its state, its running test) is looked up
        once per name in ``works``; only the split is per request."""
        view = self.view
        model, resolve, pair, route_of = view.model, view.resolve, view.pair, self.router.route
        unknown: list[Work] = []
        targets: dict[str, tuple[ModelState, Any] | None] = {}
        for w in works:
            req = w.request
            try:
                name = req.model_id
                if name in targets:
                    target = targets[name]
                else:
                    state = model(name)
                    if state is None or state.served_by is not None:
                        # an alias, or an id promoted over: follow it to the model that serves
                        state = resolve(name)
                    target = targets[name] = (
                        None if state is None else (state, pair(state.model_id))
                    )
                if target is None:
                    unknown.append(w)
                    continue
                request_id = req.id
                route = route_of(target[0], target[1], req.unit_id or request_id, request_id)
                w.route = route
                served = w.served = route.served
                if not served.serves:
                    w.failure = ModelNotActive(
                        f"model '{served.model_id}' is {served.status}; "
                        "only active models serve predictions"
                    )
            except Exception as exc:  # noqa: BLE001 - one request's bug, not the consumer's
                targets.pop(req.model_id, None)
                internal_error(w, "routing", exc)
        return unknown

    @staticmethod
    def not_found(w: Work) -> None:
        name = w.request.model_id
        if "@" in name:
            w.failure = ModelNotFound(f"no model has the alias '{name}'")
        else:
            w.failure = ModelNotFound(f"no model '{name}' is registered")

    def split(self, works: list[Work]) -> tuple[list[Work], dict[str, list[Work]]]:
        """(the works answered already - failed, or from the cache -, the rest by served
        model id). An input the cache cannot hash (a number beyond 64 bits) is not cached."""
        answered: list[Work] = []
        by_model: dict[str, list[Work]] = defaultdict(list)
        cache = self.cache
        caching = cache.enabled
        get = cache.get
        now = time.perf_counter()
        pays: dict[str, bool] = {}
        for w in works:
            served = w.served
            if w.failure is not None or served is None:
                answered.append(w)
                continue
            worth = pays.get(served.model_id) if caching else False
            if worth is None:
                worth = pays[served.model_id] = self.cache_pays(served)
            if worth and not w.request.explain:  # explanations are never cached
                try:
                    w.key = key = (served.model_id, served.version, input_hash(w.request.input))
                except Exception:  # noqa: BLE001 - not cached
                    w.key = None
                else:
                    hit = get(key)
                    if hit is not MISSING:
                        w.output, w.cached, w.done_at = hit, True, now
                        answered.append(w)
                        continue
            by_model[served.model_id].append(w)
        return answered, by_model

    def cache_pays(self, served: ModelState) -> bool:
        """Whether to use the cache for ``served``: until its predictions are timed, and
        then if they cost at least ``cache_min_item_us`` a request (hashing an input and
        the lookups cost a few microseconds; a local model answers a batch faster)."""
        cost = self.item_cost.get((served.model_id, served.version))
        return cost is None or cost >= self._cache_min_item_s

    # ------------------------------------------------------------------ predict

    async def predict_group(self, group: list[Work]) -> None:
        """One ``predict_batch`` for ``group`` (all served by the same model). Sets each
        work's output or failure; never raises (but for cancellation).

        A vectorised call that one bad input fails as a whole (scikit-learn refuses a whole
        matrix for one NaN) would fail its neighbours too: when every input gets the very
        same non-transient failure, the group is split in halves and tried again, down to
        the inputs that fail on their own (at most ``ISOLATE_CALLS`` more calls a group).
        """
        served = group[0].served
        assert served is not None
        inputs = [w.request.input for w in group]
        explain = [w.request.explain for w in group]
        flags = explain if any(explain) else None
        started = time.perf_counter()
        outputs = await self._call(served, inputs, flags)
        if flags is None:
            per_item = (time.perf_counter() - started) / len(inputs)
            key = (served.model_id, served.version)
            last = self.item_cost.get(key)
            self.item_cost[key] = per_item if last is None else 0.8 * last + 0.2 * per_item
        if len(group) > 1 and _shared_failure(outputs):
            outputs = await self._isolate(served, inputs, outputs, [ISOLATE_CALLS], flags)
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
            if w.fell_back and w.failure is not None:
                # The champion failed too: an error, not a fallback.
                w.failure = type(w.failure)(
                    f"{w.fallback_reason} (challenger); champion fallback: {w.failure.message}"[
                        :500
                    ]
                )
                w.fallback = w.fallback_reason = None

    async def _call(
        self, served: ModelState, inputs: list[Any], explain: list[bool] | None = None
    ) -> list[Any]:
        """``predict_batch`` (``explain_batch`` when a request asks ``explain``), with any
        error it raises as every input's failure."""
        try:
            provider = self.factory.get_provider(served.config)
            if explain is None:
                outputs = await provider.predict_batch(inputs)
            else:
                outputs = await provider.explain_batch(inputs, explain)
            if len(outputs) != len(inputs):
                raise ProviderFailed(
                    f"provider of '{served.model_id}' returned {len(outputs)} outputs "
                    f"for {len(inputs)} inputs"
                )
            return outputs
        except Exception as exc:  # noqa: BLE001 - an adapter bug fails its group, not the consumer
            failure = (
                exc
                if isinstance(exc, PredictionFailure)
                else ProviderFailed(f"provider of '{served.model_id}': {type(exc).__name__}")
            )
            log.error(
                "provider failed a whole group: %s",
                failure.message,
                extra={"model_id": served.model_id},
            )
            return [failure] * len(inputs)

    async def _isolate(
        self,
        served: ModelState,
        inputs: list[Any],
        outputs: list[Any],
        budget: list[int],
        explain: list[bool] | None = None,
    ) -> list[Any]:
        """``outputs`` (one failure shared by all ``inputs``), narrowed down by halves."""
        if len(inputs) < 2 or budget[0] < 2:
            return outputs
        middle = len(inputs) // 2
        narrowed: list[Any] = []
        for lo, hi in ((0, middle), (middle, len(inputs))):
            part = inputs[lo:hi]
            flags = explain[lo:hi] if explain is not None and any(explain[lo:hi]) else None
            budget[0] -= 1
            out = await self._call(served, part, flags)
            if len(part) > 1 and _shared_failure(out):
                out = await self._isolate(served, part, out, budget, flags)
            narrowed.extend(out)
        return narrowed

    # ------------------------------------------------------------------ fallback

    def fallback_to_champion(self, works: list[Work]) -> list[Work]:
        """A challenger that failed: serve the champion's prediction, tagged as a fallback.
        Returns the works the champion must predict (the others are answered from the cache
        or stay as they are)."""
        retry: list[Work] = []
        for w in works:
            route = w.route
            if (
                w.failure is None
                or w.fell_back
                or route is None
                or route.variant != "challenger"
                or route.champion is None
                or not route.champion.status.serves
            ):
                continue
            w.fell_back = True
            w.fallback, w.fallback_reason = (
                "champion",
                f"{w.failure.code}: {w.failure.message}"[:500],
            )
            w.served, w.failure = route.champion, None
            w.key, hit = None, MISSING
            if self.cache.enabled and not w.request.explain:
                try:
                    w.key = (
                        route.champion.model_id,
                        route.champion.version,
                        input_hash(w.request.input),
                    )
                    hit = self.cache.get(w.key)
                except Exception:  # noqa: BLE001 - not cached
                    w.key = None
            if hit is not MISSING:
                w.output, w.cached = hit, True
            else:
                retry.append(w)
        return retry

    def fallback_to_mock(self, w: Work) -> None:
        """A provider failure becomes a mock prediction, only when the consumer is so
        configured."""
        failure, served = w.failure, w.served
        if not self.config.mock_fallback or failure is None or served is None:
            return
        if failure.error_code in _NO_MOCK:
            return
        reason = f"{failure.code}: {failure.message}"[:500]
        if w.fallback == "champion" and w.fallback_reason:
            reason = f"{w.fallback_reason}; champion: {reason}"[:500]
        try:
            w.output = mock_output(served.type, w.request.input)
        except Exception:  # noqa: BLE001 - an input the mock cannot hash: the failure stands
            return
        w.failure, w.fallback, w.fallback_reason, w.cached = None, "mock", reason, False
