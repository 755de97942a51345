"""custom: a Python callable the operator granted (self-hosted or rule-based models).

Settings: ``callable`` (required): the name of an entry point of the
``model_registry.callables`` group, or an exact ``module:function`` listed in
``REGISTRY_GRANTS_CALLABLES`` (``consumers.providers.callables``; anything else is refused
before anything is imported). ``batch`` (default false: the function takes one input; true:
it takes the list of inputs and returns a list of the same length).

The function may be ``async``: it runs on the event loop under the call policy (timeout per
attempt, retries, at most ``concurrency`` calls at a time). A sync function runs in a thread
of the provider's own pool of ``concurrency`` threads, under the same timeout: a call that
overruns yields ``ProviderTimeout`` for its input at once; its thread runs on to its end (a
thread cannot be stopped) and keeps its slot until then, so a stuck function exhausts its own
model's pool (its calls time out, then the circuit breaker pauses them), never the event loop
nor another model; its timeouts (only they, for a sync function) count toward the circuit
breaker. The function may raise a ``consumers.errors.PredictionFailure`` (e.g.
``InvalidInput``) to give a precise code.

Explanations (a request with ``explain: true``): the function may carry its own explainer as
an attribute, ``explain`` - a function of the same input (of the list of inputs with
``batch: true``, then returning a list of the same length), sync or async, run like the
function itself, only for the requests that ask and after their prediction succeeded. It
returns a mapping ``{"contributions": {feature: number, ...} | [{"feature", "contribution",
"value"?}, ...], "baseline"?: number, "target"?: text, "target_value"?: number}``; the
result carries it as an explanation of method ``custom``, checked and bounded
(``consumers.providers.explain.custom_explanation``: the 20 largest contributions, names cut
to 128 characters, finite numbers only). A function without ``explain``, an explainer that
raises, times out or returns anything else gives ``explanation_error`` - never a failed
prediction::

    def score(lead): ...
    def why(lead): return {"contributions": {"visits": 10.0 * lead["visits"]}, "baseline": 0}
    score.explain = why
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from consumers.errors import PredictionFailure, ProviderBadResponse, ProviderTimeout
from consumers.providers.base import ProviderSpec, RemoteProvider, as_failure, explained_or
from consumers.providers.callables import granted_callable
from consumers.providers.explain import Explained, ExplanationRefused, custom_explanation

__all__ = ["CustomProvider", "load_callable"]


def load_callable(spec: ProviderSpec, target: str) -> Callable[..., Any]:
    """The granted callable ``target`` names. Raises ``ProviderConfigInvalid``."""
    return granted_callable(spec.label, "callable", target, spec.grants)  # type: ignore[no-any-return]


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - an instance with async __call__
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _release_on(loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore) -> None:
    """Give a thread's slot back, from the thread that ends (the loop may be gone by then)."""
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the slot
        loop.call_soon_threadsafe(slots.release)


class CustomProvider(RemoteProvider):
    """Calls a granted function per input (or once per batch with ``batch: true``)."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.function = load_callable(spec, spec.setting("callable"))
        self.batch: bool = spec.setting("batch", False, bool)
        self.is_async = _is_async(self.function)
        self._pool: ThreadPoolExecutor | None = None
        self._threads: asyncio.Semaphore | None = None
        if not self.is_async:
            size = spec.policy.concurrency
            self._pool = ThreadPoolExecutor(size, thread_name_prefix=f"custom-{spec.model_id}")
            self._threads = asyncio.Semaphore(size)

    async def predict_one(self, value: Any) -> Any:
        return await self._run(self.function, value)

    async def _run(self, function: Callable[..., Any], value: Any) -> Any:
        """``function(value)``: in the pool when the model's function is sync."""
        out = await self._call_sync(function, value) if self._pool is not None else function(value)
        if inspect.isawaitable(out):
            out = await out
        return out

    async def explain_batch(self, inputs: Sequence[Any], explain: Sequence[bool]) -> list[Any]:
        """Predictions, then the function's own ``explain`` for the flagged inputs that were
        predicted (see the module's docstring)."""
        outputs = await self.predict_batch(inputs)
        chosen = [
            i
            for i, flag in enumerate(explain)
            if flag and not isinstance(outputs[i], PredictionFailure)
        ]
        if not chosen:
            return outputs
        explainer = getattr(self.function, "explain", None)
        if not callable(explainer):
            reason = f"{self.spec.label}: the function has no explain attribute to explain with"
            return explained_or(outputs, explain, lambda _i, _out: reason)
        values = [inputs[i] for i in chosen]
        if self.batch:
            raws = await self.guarded(lambda: self._run(explainer, values), retries=0)
            if not isinstance(raws, PredictionFailure) and (
                not isinstance(raws, list) or len(raws) != len(values)
            ):
                raws = ProviderBadResponse(
                    f"a batch explainer must return a list of {len(values)} explanations"
                )
            answers = [raws] * len(values) if isinstance(raws, PredictionFailure) else raws
        else:

            async def one(value: Any) -> Any:
                async with self._slots:
                    return await self.guarded(lambda: self._run(explainer, value), retries=0)

            answers = list(await asyncio.gather(*(one(v) for v in values)))
        for i, value, raw in zip(chosen, values, answers, strict=True):
            outputs[i] = self._explained(outputs[i], value, raw)
        return outputs

    def _explained(self, output: Any, value: Any, raw: Any) -> Explained:
        if isinstance(raw, PredictionFailure):
            failure = as_failure(raw, self.spec)
            return Explained.refused(output, f"the explainer failed: {failure.message}")
        try:
            return Explained(output, custom_explanation(raw, value))
        except ExplanationRefused as exc:
            return Explained.refused(output, str(exc))

    async def _call_sync(self, function: Callable[..., Any], value: Any) -> Any:
        """Run the sync function in the provider's pool; the slot is held until the thread
        ends, not until the caller stops waiting (a timed-out call keeps its slot)."""
        assert self._pool is not None
        assert self._threads is not None
        slots = self._threads
        await slots.acquire()  # waiting for a slot counts against the call's timeout
        loop = asyncio.get_running_loop()
        try:
            future = self._pool.submit(function, value)
        except BaseException:
            slots.release()
            raise
        future.add_done_callback(lambda _: _release_on(loop, slots))
        return await asyncio.wrap_future(future)

    def trips_breaker(self, failure: PredictionFailure) -> bool:
        """A sync function that fails fast costs nothing to call again: only its timeouts (a
        stuck function holding its threads) count toward pausing it."""
        if self._pool is not None:
            return isinstance(failure, ProviderTimeout)
        return super().trips_breaker(failure)

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        if not self.batch:
            return await super().predict_batch(inputs)  # one guarded call per input
        outputs = await self.guarded(lambda: self.predict_one(list(inputs)))
        if not isinstance(outputs, list) or len(outputs) != len(inputs):
            if not isinstance(outputs, Exception):
                outputs = ProviderBadResponse(
                    f"{self.spec.label}: a batch function must return "
                    f"a list of {len(inputs)} outputs"
                )
            return [outputs] * len(inputs)
        return outputs

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
