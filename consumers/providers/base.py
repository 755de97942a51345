"""The provider port: ``ModelProvider`` turns a batch of inputs into outputs for one model.

``ProviderSpec`` is what a provider knows of its model: ids, type, endpoint, credential
*references*, the provider-specific settings of ``providerConfig``, and what the operator
grants (``GrantSettings``: code, model roots, credentials, hosts;
docs/security-providers.md). A provider reports failures per input as ``PredictionFailure``
values, so one bad input never fails its batch.

``RemoteProvider`` adds the call policy of remote providers: a timeout per attempt,
retries with exponential backoff and jitter for transient failures, bounded concurrency.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from consumers.errors import (
    CredentialUnavailable,
    PredictionFailure,
    ProviderConfigInvalid,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnavailable,
)
from consumers.providers.explain import Explained
from consumers.providers.secrets import Secret, redact, resolve_reference
from registry.core.types import ModelConfig, ModelType, Provider
from registry.infra.settings import GrantSettings, PredictorSettings

__all__ = [
    "BrokenProvider",
    "CallPolicy",
    "CircuitBreaker",
    "ModelProvider",
    "ProviderSpec",
    "RemoteProvider",
    "as_failure",
    "explained_or",
]

T = TypeVar("T")
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Timeout per attempt, retries of transient failures, concurrent calls per provider, and
    the circuit breaker: after ``breaker_threshold`` transient failures in a row, calls fail
    fast for ``breaker_cooldown_s`` (so an outage costs one timeout, not one per request)."""

    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.05
    concurrency: int = 32
    breaker_threshold: int = 20
    breaker_cooldown_s: float = 5.0

    @classmethod
    def of(cls, predictor: PredictorSettings) -> CallPolicy:
        """The default policy of the predictor's settings (a model's providerConfig may
        override it)."""
        return cls(
            timeout_s=predictor.provider_timeout_s,
            retries=predictor.provider_retries,
            backoff_s=predictor.provider_backoff_s,
            concurrency=predictor.provider_concurrency,
            breaker_threshold=predictor.breaker_threshold,
            breaker_cooldown_s=predictor.breaker_cooldown_s,
        )


class CircuitBreaker:
    """Counts transient failures in a row; opens for a cool-down when they reach the threshold.

    After the cool-down one call goes through (half-open): a success closes the breaker, a
    failure opens it again at once.
    """

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    def retry_in(self) -> float:
        """Seconds until calls are allowed again (0: allowed now)."""
        return max(0.0, self._open_until - self._clock())

    def record(self, ok: bool) -> None:
        if ok:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.threshold:
            self._open_until = self._clock() + self.cooldown_s
            self._failures = self.threshold - 1  # half-open afterwards: one more failure reopens


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One model version as its provider sees it."""

    model_id: str
    version: str
    model_type: ModelType
    provider: Provider
    endpoint: str | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    policy: CallPolicy = field(default_factory=CallPolicy)
    grants: GrantSettings = field(default_factory=GrantSettings)

    @classmethod
    def from_config(
        cls, config: ModelConfig, policy: CallPolicy, grants: GrantSettings | None = None
    ) -> ProviderSpec:
        """The spec of a model: ``providerConfig`` first, the top-level fields as defaults.

        ``timeoutS``, ``retries`` and ``maxConcurrency`` in the settings override ``policy``;
        ``grants`` come from the operator only (never from the model).
        """
        pc = config.provider_config
        credentials = {**(config.credentials or {}), **((pc.credentials if pc else None) or {})}
        settings = pc.settings if pc else {}
        endpoint = (pc.endpoint if pc else None) or config.endpoint
        spec = cls(
            config.id,
            config.version,
            config.type,
            config.provider,
            endpoint,
            credentials,
            settings,
            policy,
            grants or GrantSettings(),
        )
        return spec._with_policy_overrides()

    def _with_policy_overrides(self) -> ProviderSpec:
        p = self.policy
        policy = CallPolicy(
            timeout_s=self.number("timeoutS", p.timeout_s, minimum=0.001),
            retries=int(self.number("retries", p.retries, minimum=0)),
            backoff_s=self.number("retryBackoffS", p.backoff_s, minimum=0),
            concurrency=int(self.number("maxConcurrency", p.concurrency, minimum=1)),
            breaker_threshold=int(self.number("breakerThreshold", p.breaker_threshold, minimum=1)),
            breaker_cooldown_s=self.number("breakerCooldownS", p.breaker_cooldown_s, minimum=0),
        )
        return ProviderSpec(
            self.model_id,
            self.version,
            self.model_type,
            self.provider,
            self.endpoint,
            self.credentials,
            self.settings,
            policy,
            self.grants,
        )

    @property
    def label(self) -> str:
        return f"{self.provider} model '{self.model_id}' {self.version}"

    def setting(self, name: str, default: Any = _UNSET, kind: type | tuple[type, ...] = str) -> Any:
        """A provider setting of type ``kind``. Raises ``ProviderConfigInvalid``."""
        value = self.settings.get(name, default)
        if value is _UNSET:
            raise ProviderConfigInvalid(f"{self.label}: providerConfig.{name} is required")
        if value is not None and value is not default and not isinstance(value, kind):
            raise ProviderConfigInvalid(f"{self.label}: providerConfig.{name} has the wrong type")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        value = self.settings.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise ProviderConfigInvalid(
                f"{self.label}: providerConfig.{name} must be a number >= {minimum}"
            )
        return float(value)

    def credential(self, name: str, *, required: bool = True) -> Secret | None:
        """Resolve the credential reference ``name`` now, at call time, within the grants.

        Raises:
            CredentialUnavailable: not configured (when required), not granted, or not
                resolvable.
        """
        ref = self.credentials.get(name)
        if ref is None:
            if required:
                raise CredentialUnavailable(f"{self.label}: credentials.{name} is not configured")
            return None
        return resolve_reference(f"credentials.{name}", ref, self.grants)

    def plain(self, name: str) -> str | None:
        """A non-secret credential entry (``region``) or setting of that name."""
        value = self.credentials.get(name) or self.settings.get(name)
        return value if isinstance(value, str) else None


def explained_or(
    outputs: list[Any], explain: Sequence[bool], reason: Callable[[int, Any], str]
) -> list[Any]:
    """``outputs`` with each flagged success wrapped as ``Explained``, refused with
    ``reason(index, output)``."""
    return [
        Explained.refused(out, reason(i, out))
        if flag and not isinstance(out, PredictionFailure)
        else out
        for i, (out, flag) in enumerate(zip(outputs, explain, strict=True))
    ]


def as_failure(exc: BaseException, spec: ProviderSpec) -> PredictionFailure:
    """Any exception as a ``PredictionFailure`` whose message has no revealed secret in it."""
    if isinstance(exc, PredictionFailure):
        failure = exc
    elif isinstance(exc, TimeoutError):
        failure = ProviderTimeout(f"{spec.label}: no answer within {spec.policy.timeout_s:g}s")
    else:
        failure = ProviderFailed(f"{spec.label}: {type(exc).__name__}: {exc}")
    clean = redact(failure.message)[:500]
    if clean != failure.message:
        failure = type(failure)(clean)
    return failure


class ModelProvider(ABC):
    """Predicts for one model version. Implementations are named after their technology."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.breaker = CircuitBreaker(spec.policy.breaker_threshold, spec.policy.breaker_cooldown_s)

    @abstractmethod
    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        """One output per input, in order; a failed input's slot holds a ``PredictionFailure``.

        Never raises for a failure of the call: it is reported in every affected slot.
        """

    async def explain_batch(self, inputs: Sequence[Any], explain: Sequence[bool]) -> list[Any]:
        """``predict_batch``, with explanations for the inputs whose ``explain`` flag is set.

        A flagged input whose prediction succeeds gets an ``Explained`` (its output, and an
        explanation or the reason there is none) in its slot; the others are as
        ``predict_batch`` gives them. Only called for a group with a flag set, so requests
        without ``explain`` cost nothing more. This default explains nothing: providers that
        can (``sklearn``, ``custom``) override it.
        """
        outputs = await self.predict_batch(inputs)
        reason = f"{self.spec.provider} models give no explanations"
        return explained_or(outputs, explain, lambda _i, _out: reason)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections and loaded models."""

    async def warm(self) -> None:  # noqa: B027 - optional hook
        """Load what the first call would load (a model file), so it does not wait. Never raises."""

    def trips_breaker(self, failure: PredictionFailure) -> bool:
        """Whether ``failure`` counts toward opening the circuit breaker (transient ones)."""
        return failure.transient

    async def guarded(
        self, call: Callable[[], Awaitable[T]], *, retries: int | None = None
    ) -> T | PredictionFailure:
        """Run ``call`` under the policy: timeout per attempt, retries with backoff for
        transient failures. Returns the failure of the last attempt instead of raising."""
        policy = self.spec.policy
        retries = policy.retries if retries is None else retries
        failure: PredictionFailure = ProviderFailed(f"{self.spec.label}: not called")
        breaker = self.breaker
        for attempt in range(retries + 1):
            wait = breaker.retry_in()
            if wait > 0:
                last = f" (last: {failure.code})" if attempt else ""
                return ProviderUnavailable(
                    f"{self.spec.label}: calls paused for {wait:.1f}s after repeated failures{last}"
                )
            try:
                async with asyncio.timeout(policy.timeout_s):
                    result = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a typed result
                failure = as_failure(exc, self.spec)
            else:
                breaker.record(True)
                return result
            if self.trips_breaker(failure):
                breaker.record(False)
            if not failure.transient or attempt == retries:
                break
            delay = policy.backoff_s * (2**attempt) * (0.5 + random.random())  # noqa: S311 - jitter
            await asyncio.sleep(delay)
        return failure


class RemoteProvider(ModelProvider):
    """A provider called once per input, at most ``concurrency`` calls at a time."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self._slots = asyncio.Semaphore(spec.policy.concurrency)

    @abstractmethod
    async def predict_one(self, value: Any) -> Any:
        """The output for one input; raises a ``PredictionFailure`` (or anything) on failure."""

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        async def one(value: Any) -> Any:
            async with self._slots:
                return await self.guarded(lambda: self.predict_one(value))

        return list(await asyncio.gather(*(one(v) for v in inputs)))


class BrokenProvider(ModelProvider):
    """Stands for a provider that could not be built: every input gets the same failure."""

    def __init__(self, spec: ProviderSpec, failure: PredictionFailure) -> None:
        super().__init__(spec)
        self.failure = failure

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        return [self.failure] * len(inputs)
