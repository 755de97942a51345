"""Fixtures for the write path: a running decider and a connected ModelRegistry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from model_registry.client import ModelRegistry
from registry.decider.decider import Decider
from registry.infra.settings import Settings


@pytest.fixture
async def decider(settings: Settings) -> AsyncIterator[Decider]:
    """A decider running in the background for one test."""
    d = Decider(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    await asyncio.wait_for(d.ready.wait(), 20)
    yield d
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def registry(settings: Settings, decider: Decider) -> AsyncIterator[ModelRegistry]:
    async with ModelRegistry(settings, actor="tester") as reg:  # signs as a gateway would
        yield reg
