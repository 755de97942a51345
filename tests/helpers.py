"""Helpers shared by tests: read whole topics, build model configs."""

from __future__ import annotations

from typing import Any

from registry import codec
from registry.domain.messages import EventBase
from registry.kafka.clients import make_consumer, partitions_of, read_until_caught_up
from registry.settings import Settings


async def read_topic(settings: Settings, name: str) -> list[Any]:
    """Every record of a topic (all partitions), to the high watermark."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.topic(name))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        await read_until_caught_up(consumer, tps, lambda tp, recs: out.extend(recs))
        return out
    finally:
        await consumer.stop()


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
