"""The decider commits its command offsets in the background: never before the replies, and
all of them by the time it stops, so a restart decides nothing twice."""

from __future__ import annotations

from model_registry.client import ModelRegistry
from registry.infra.settings import Settings
from tests.helpers import model_config, running_decider


async def test_offsets_are_committed_by_stop_and_a_restart_decides_nothing_again(
    settings: Settings,
) -> None:
    async with running_decider(settings) as first:
        async with ModelRegistry(settings, actor="tester") as reg:
            await reg.register(model_config("c1", status="active"))
            for i in range(5):
                await reg.record_metrics("c1", {"accuracy": float(i)})
        assert first.stats.commands == 6
    async with running_decider(settings) as again:
        async with ModelRegistry(settings, actor="tester") as reg:
            result = await reg.record_metrics("c1", {"accuracy": 99.0})
        assert result.revision == 7
        # only the new command: the six answered before the stop were committed
        assert again.stats.commands == 1
        assert again.stats.duplicates == 0
