"""Helpers shared by tests: read whole topics, build model configs, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from registry.core import codec
from registry.core.messages import EventBase
from registry.infra.kafka.follower import Batch, LogFollower
from registry.infra.settings import Settings

if TYPE_CHECKING:
    from registry.decider.decider import Decider

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Fails the test (``AssertionError``, with the last value seen) when ``timeout`` seconds
    pass first. The one way tests wait: never a fixed sleep before an assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not true within {timeout:g}s: {what or getattr(predicate, '__name__', predicate)}"
                f" (last value {value!r})"
            )
        await asyncio.sleep(interval)


async def read_topic(settings: Settings, name: str) -> list[Any]:
    """Every record of a topic (all partitions), to the high watermark."""
    follower = LogFollower(settings, [settings.topic(name)], name=f"test reader of {name}")
    await follower.start()
    out: list[Any] = []

    def keep(batch: Batch) -> None:
        for tp in follower.partitions:
            out.extend(batch.get(tp, ()))

    try:
        await follower.catch_up(keep)
    finally:
        await follower.stop()
    return sorted(out, key=lambda r: (r.partition, r.offset))


async def read_events(settings: Settings) -> list[EventBase]:
    return [codec.decode_event(r.value) for r in await read_topic(settings, "registry.events")]


def model_config(model_id: str = "lead-scoring-v1", **overrides: Any) -> dict[str, Any]:
    """A valid ModelConfig mapping (camelCase, as a CRM module would send it)."""
    cfg: dict[str, Any] = {
        "id": model_id,
        "name": f"Model {model_id}",
        "version": "1.0.0",
        "type": "classification",
        "provider": "scikit-learn",
        "description": "test model",
        "status": "training",
    }
    cfg.update(overrides)
    return cfg


def signed(settings: Settings, value: bytes) -> list[tuple[str, bytes]]:
    """The signature headers the test settings' identity gives a command's bytes."""
    from registry.infra.identity import load_identity

    return load_identity(settings.identity_file).headers(value)


@contextlib.asynccontextmanager
async def running_decider(settings: Settings) -> AsyncIterator[Decider]:
    """A decider running in the background for the block, stopped (and awaited) after it."""
    from registry.decider.decider import Decider

    decider = Decider(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(decider.run(stop))
    await asyncio.wait_for(decider.ready.wait(), 60)
    try:
        yield decider
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
