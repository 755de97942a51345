"""Settings of the prediction consumer, from ``PREDICTOR_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from consumers.providers.base import CallPolicy

__all__ = ["PredictorConfig"]

_ENV = {
    "group_id": "PREDICTOR_GROUP_ID",
    "assignment": "PREDICTOR_ASSIGNMENT",
    "max_batch": "PREDICTOR_MAX_BATCH",
    "max_in_flight": "PREDICTOR_MAX_IN_FLIGHT",
    "poll_timeout_ms": "PREDICTOR_POLL_TIMEOUT_MS",
    "cache_ttl_s": "PREDICTOR_CACHE_TTL_S",
    "cache_max_entries": "PREDICTOR_CACHE_MAX_ENTRIES",
    "dedupe_max_ids": "PREDICTOR_DEDUPE_MAX_IDS",
    "mock_fallback": "PREDICTOR_MOCK_FALLBACK",
    "provider_timeout_s": "PREDICTOR_PROVIDER_TIMEOUT_S",
    "provider_retries": "PREDICTOR_PROVIDER_RETRIES",
    "provider_backoff_s": "PREDICTOR_PROVIDER_BACKOFF_S",
    "provider_concurrency": "PREDICTOR_PROVIDER_CONCURRENCY",
    "breaker_threshold": "PREDICTOR_BREAKER_THRESHOLD",
    "breaker_cooldown_s": "PREDICTOR_BREAKER_COOLDOWN_S",
    "unknown_model_wait_s": "PREDICTOR_UNKNOWN_MODEL_WAIT_S",
    "session_timeout_ms": "PREDICTOR_SESSION_TIMEOUT_MS",
    "warm_up_timeout_s": "PREDICTOR_WARM_UP_TIMEOUT_S",
    "tune_gc": "PREDICTOR_TUNE_GC",
}


@dataclass(frozen=True)
class PredictorConfig:
    """How the prediction consumer batches, caches, dedupes, calls providers and falls back.

    Backpressure: at most ``max_batch`` requests are handled at a time and at most
    ``max_in_flight`` handled batches wait for their acknowledgements and commit; beyond
    that the loop stops fetching. Memory is bounded by those two numbers.
    """

    group_id: str = "predictor"  # the topic prefix is put in front of it
    # "group": partitions shared by the members of the consumer group (scale out);
    # "all": this instance reads every partition, committing to the same group id (one
    # instance; starts at once, resumes at once after a crash).
    assignment: str = "group"
    max_batch: int = 4000
    max_in_flight: int = 2  # handled batches waiting for acks/commit while the next is handled
    poll_timeout_ms: int = 100
    cache_ttl_s: float = 300.0
    cache_max_entries: int = 100_000
    dedupe_max_ids: int = 200_000
    mock_fallback: bool = False
    provider_timeout_s: float = 10.0
    provider_retries: int = 2
    provider_backoff_s: float = 0.05
    provider_concurrency: int = 32
    breaker_threshold: int = 20
    breaker_cooldown_s: float = 5.0
    unknown_model_wait_s: float = 1.0
    session_timeout_ms: int = 10_000
    warm_up_timeout_s: float = 30.0
    tune_gc: bool = True

    def __post_init__(self) -> None:
        if self.assignment not in {"group", "all"}:
            raise ValueError(f"assignment must be 'group' or 'all', not {self.assignment!r}")
        if self.max_batch < 1 or self.max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")

    @classmethod
    def from_env(cls, **overrides: Any) -> PredictorConfig:
        """Defaults, then ``PREDICTOR_*`` variables, then ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _ENV[f.name]
            raw = os.environ.get(name)
            if raw in (None, ""):
                continue
            assert raw is not None
            if f.type in ("bool", bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
                continue
            kind: type = (
                int if f.type in ("int", int) else float if f.type in ("float", float) else str
            )
            try:
                values[f.name] = kind(raw)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise ValueError(f"{name} must be {what}, not {raw!r}") from None
        return replace(cls(**values), **overrides)

    @property
    def call_policy(self) -> CallPolicy:
        """The default policy of provider calls (a model's providerConfig may override it)."""
        return CallPolicy(
            timeout_s=self.provider_timeout_s,
            retries=self.provider_retries,
            backoff_s=self.provider_backoff_s,
            concurrency=self.provider_concurrency,
            breaker_threshold=self.breaker_threshold,
            breaker_cooldown_s=self.breaker_cooldown_s,
        )
