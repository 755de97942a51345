"""custom: a Python callable named ``module:function`` (self-hosted or rule-based models).

Settings: ``callable`` (required, ``package.module:function``), ``batch`` (default false:
the function takes one input; true: it takes the list of inputs and returns a list of the
same length). The function may be ``async``. A sync function runs on the event loop, so it
should be quick (rules, lookups); put slow work behind an ``async`` function. It may raise a
``consumers.errors.PredictionFailure`` (e.g. ``InvalidInput``) to give a precise code.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any

from consumers.errors import PredictionFailure, ProviderBadResponse, ProviderConfigInvalid
from consumers.providers.base import ProviderSpec, RemoteProvider, as_failure

__all__ = ["CustomProvider", "load_callable"]


def load_callable(spec: ProviderSpec, target: str) -> Callable[..., Any]:
    """Import ``module:function``. Raises ``ProviderConfigInvalid``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ProviderConfigInvalid(
            f"{spec.label}: providerConfig.callable must look like 'package.module:function'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ProviderConfigInvalid(
            f"{spec.label}: cannot import {module_name} ({type(exc).__name__})"
        ) from None
    except AttributeError:
        raise ProviderConfigInvalid(
            f"{spec.label}: {module_name} has no attribute {attr}"
        ) from None
    if not callable(obj):
        raise ProviderConfigInvalid(f"{spec.label}: {target} is not callable")
    return obj  # type: ignore[no-any-return]


class CustomProvider(RemoteProvider):
    """Calls a user function per input (or once per batch with ``batch: true``)."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.function = load_callable(spec, spec.setting("callable"))
        self.batch: bool = spec.setting("batch", False, bool)
        self.is_async = inspect.iscoroutinefunction(self.function)

    async def predict_one(self, value: Any) -> Any:
        out = self.function(value)
        if inspect.isawaitable(out):
            out = await out
        return out

    def _call_sync(self, value: Any) -> Any:
        try:
            return self.function(value)
        except Exception as exc:  # noqa: BLE001 - reported in the input's slot
            return as_failure(exc, self.spec)

    async def _sync_batch(self, inputs: Sequence[Any]) -> list[Any]:
        """A sync function runs inline (it cannot be timed out). Transient failures are
        retried in rounds: one backoff per round for the whole batch, not one per input."""
        outputs = [self._call_sync(v) for v in inputs]
        policy = self.spec.policy
        for attempt in range(policy.retries):
            pending = [
                i
                for i, out in enumerate(outputs)
                if isinstance(out, PredictionFailure) and out.transient
            ]
            if not pending:
                break
            await asyncio.sleep(policy.backoff_s * (2**attempt) * (0.5 + random.random()))  # noqa: S311 - jitter
            for i in pending:
                outputs[i] = self._call_sync(inputs[i])
        return outputs

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        if not self.batch:
            if self.is_async:
                return await super().predict_batch(inputs)  # concurrent, under the call policy
            return await self._sync_batch(inputs)
        outputs = await self.guarded(lambda: self.predict_one(list(inputs)))
        if not isinstance(outputs, list) or len(outputs) != len(inputs):
            if not isinstance(outputs, Exception):
                outputs = ProviderBadResponse(
                    f"{self.spec.label}: a batch function must return "
                    f"a list of {len(inputs)} outputs"
                )
            return [outputs] * len(inputs)
        return outputs
