"""Fixtures of the monitor tests: a monitor database path and a monitor factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from consumers.monitor.service import Monitor
from registry.infra.settings import MonitorSettings, Settings


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "monitor.db"


@pytest.fixture
async def make_monitor(settings: Settings, db_path: Path) -> AsyncIterator[Callable[..., Monitor]]:
    """Build monitors on the test's topics and database; all are closed at the end."""
    made: list[Monitor] = []

    def make(**config: object) -> Monitor:
        m = Monitor(settings, db_path, MonitorSettings(**{"max_records": 2000, **config}))  # type: ignore[arg-type]
        made.append(m)
        return m

    yield make
    for m in made:
        await m.close()
