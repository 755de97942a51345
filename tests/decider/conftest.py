"""Fixtures for the write path: a running decider and a connected ModelRegistry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from model_registry.client import ModelRegistry
from registry.decider.decider import Decider
from registry.infra.settings import Settings
from tests.helpers import running_decider


@pytest.fixture
async def decider(settings: Settings) -> AsyncIterator[Decider]:
    """A decider running in the background for one test."""
    async with running_decider(settings) as d:
        yield d


@pytest.fixture
async def registry(settings: Settings, decider: Decider) -> AsyncIterator[ModelRegistry]:
    async with ModelRegistry(settings, actor="tester") as reg:  # signs as a gateway would
        yield reg
