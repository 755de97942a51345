"""Realistic registry event streams, fast: one model's history built by the real rules,
then stamped out per model id (ids and uuids rewritten) so a million events cost seconds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from registry.core import codec
from registry.core import messages as m
from registry.core.errors import Rejection
from registry.core.rules import decide
from registry.core.state import RegistryState
from registry.core.types import Metrics, ModelConfig

TEMPLATE_ID = "tmpl-model-00000000"
_UUID = re.compile(rb"[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def _history(model_id: str, n_metrics: int) -> list[m.EventBase]:
    """A model's life: register (large config), metrics, status moves, config, release."""
    state = RegistryState()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    cfg = ModelConfig.model_validate(
        {
            "id": model_id,
            "name": "Lead scoring",
            "version": "1.0.0",
            "type": "classification",
            "provider": "aws-sagemaker",
            "description": "Scores inbound leads by conversion probability " * 3,
            "providerConfig": {
                "provider": "aws-sagemaker",
                "endpoint": "https://runtime.sagemaker.us-east-1.amazonaws.com",
                "endpointName": "lead-scoring",
                "credentials": {
                    "accessKeyId": "env:AWS_ACCESS_KEY_ID",
                    "secretAccessKey": "env:AWS_SECRET_ACCESS_KEY",
                    "region": "us-east-1",
                },
            },
            "parameters": {
                "max_depth": 6,
                "n_estimators": 300,
                "features": ["employees", "engagement", "opens", "visits"],
            },
            "metrics": {"accuracy": 85.0, "precision": 82.1, "recall": 88.0, "f1Score": 84.9},
            "status": "training",
        }
    )
    commands: list[m.CommandBase] = [
        m.RegisterModel(model_id=model_id, payload=cfg, actor="ml-platform")
    ]
    commands.append(
        m.ChangeStatus(
            model_id=model_id, payload=m.ChangeStatusPayload(status="testing"), actor="ci"
        )
    )
    for i in range(n_metrics):
        commands.append(
            m.RecordMetrics(
                model_id=model_id,
                payload=m.RecordMetricsPayload(
                    metrics=Metrics(
                        accuracy=80 + i % 15, precision=81.5, recall=79.0, f1_score=80.2
                    )
                ),
                actor="evaluator",
            )
        )
    commands.append(
        m.ChangeStatus(
            model_id=model_id,
            payload=m.ChangeStatusPayload(status="active", reason="validated"),
            actor="alice",
        )
    )
    commands.append(
        m.UpdateConfig(
            model_id=model_id,
            payload=m.UpdateConfigPayload(
                changes=m.ConfigChanges(description="Scores inbound leads (v1.0.1 retrain)")
            ),
            actor="alice",
        )
    )
    commands.append(
        m.ReleaseVersion(
            model_id=model_id,
            payload=m.ReleaseVersionPayload(version="1.0.1", metrics=Metrics(accuracy=86)),
            actor="ml-platform",
        )
    )
    events: list[m.EventBase] = []
    for i, cmd in enumerate(commands):
        decision = decide(cmd, state, now=t0 + timedelta(seconds=i))
        assert not isinstance(decision, Rejection), decision
        for ev in decision:
            state.apply_event(ev)
            events.append(ev)
    return events


def template(events_per_model: int = 20) -> list[bytes]:
    """Encoded events of one model's history, ``events_per_model`` long."""
    return [codec.encode(e) for e in _history(TEMPLATE_ID, max(1, events_per_model - 5))]


def stamp(tmpl: list[bytes], index: int) -> list[bytes]:
    """The template's events for model number ``index`` (fresh ids, same shape)."""
    mid = f"model-{index:08d}".encode()
    prefix = f"{index:08x}".encode()
    return [
        _UUID.sub(lambda mt: prefix + mt.group(1), e.replace(TEMPLATE_ID.encode(), mid))
        for e in tmpl
    ]


def event_stream(n_events: int, events_per_model: int = 20) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of ``n_events`` events over ``n_events / events_per_model`` models."""
    tmpl = template(events_per_model)
    produced, index = 0, 0
    while produced < n_events:
        key = f"model-{index:08d}".encode()
        for value in stamp(tmpl, index):
            if produced >= n_events:
                return
            yield key, value
            produced += 1
        index += 1


async def produce(
    bootstrap: str, topic: str, pairs: Iterator[tuple[bytes, bytes]], *, partitions: int = 1
) -> int:
    """Produce (key, value) pairs fast (batched, not one await per message); returns the count."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in pairs:
            futures.append(
                await producer.send(topic, value, key=key, partition=0 if partitions == 1 else None)
            )
            n += 1
            if len(futures) >= 20000:
                await futures[-1]
                futures.clear()
        await producer.flush()
    finally:
        await producer.stop()
    return n
