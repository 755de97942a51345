"""Test helpers: registry events for an A/B test, results and outcomes, produced for real."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from registry.core import codec
from registry.core.messages import EventBase, RegisterModel, StartABTest, StartABTestPayload
from registry.core.predictions import (
    PredictionError,
    PredictionOutcome,
    PredictionResult,
    result_id,
)
from registry.core.rules import decide
from registry.core.state import RegistryState, ab_test_id
from registry.core.types import ModelConfig
from registry.infra.kafka.clients import make_producer
from registry.infra.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHAMPION, CHALLENGER = "lead-scoring-v1", "lead-scoring-v2"


def registry_events(*commands: Any, state: RegistryState | None = None) -> list[EventBase]:
    """The events ``commands`` cause, decided and applied one after the other by the real rules."""
    state = state if state is not None else RegistryState()
    events: list[EventBase] = []
    for cmd in commands:
        decision = decide(cmd, state, now=T0)
        assert isinstance(decision, tuple), decision
        for event in decision:
            state.apply_event(event)
            events.append(event)
    return events


def ab_test_events(
    pct: float = 20.0,
    model_type: str = "classification",
    champion: str = CHAMPION,
    challenger: str = CHALLENGER,
    state: RegistryState | None = None,
) -> tuple[list[EventBase], str]:
    """Register an active champion and challenger and start a test, through the real rules."""
    cfgs = [
        ModelConfig.model_validate(
            {
                "id": m,
                "name": m,
                "version": "1.0.0",
                "type": model_type,
                "provider": "custom",
                # an active model needs a provider config; the monitor never calls it
                "providerConfig": {
                    "provider": "custom",
                    "callable": "tests.consumers.monitor.streams:score",
                },
                "status": "active",
            }
        )
        for m in (champion, challenger)
    ]
    start = StartABTestPayload(champion_model_id=champion, traffic_percentage=pct)
    events = registry_events(
        *(RegisterModel(model_id=c.id, payload=c) for c in cfgs),
        StartABTest(model_id=challenger, payload=start),
        state=state,
    )
    return events, ab_test_id(challenger, 2)


def result(
    request_id: str,
    variant: str,
    test_id: str | None,
    *,
    output: Any = None,
    error: str | None = None,
    latency_ms: float = 10.0,
    at: datetime = T0,
    champion: str = CHAMPION,
    challenger: str = CHALLENGER,
    **extra: Any,
) -> PredictionResult:
    """A result as the prediction consumer would emit it."""
    served = challenger if variant == "challenger" else champion
    return PredictionResult(
        id=result_id(request_id),
        request_id=request_id,
        requested_model_id=champion,
        served_model_id=served,
        served_version="1.0.0",
        variant=variant,  # type: ignore[arg-type]
        test_id=test_id,
        split_version=1 if test_id else None,
        output=None if error else output,
        latency_ms=latency_ms,
        provider="custom",
        error=PredictionError(code=error, message="failed") if error else None,
        occurred_at=at,
        **extra,
    )


def outcome(request_id: str, actual: Any) -> PredictionOutcome:
    return PredictionOutcome(request_id=request_id, actual=actual)


def wire(msg: BaseModel) -> bytes:
    return orjson.dumps(msg.model_dump(mode="json"))


async def produce(
    settings: Settings, name: str, values: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send (key, value) pairs to the topic ``name`` and wait until all are acknowledged
    (values up to 8 MiB: tests send oversized records on purpose)."""
    producer = make_producer(settings, linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(name), value, key=key) for key, value in values
        ]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def produce_events(settings: Settings, events: list[EventBase]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                settings.topic("registry.events"),
                codec.encode(e),
                key=e.model_id.encode(),
                headers=codec.headers_for(e),
            )
    finally:
        await producer.stop()


async def produce_results(settings: Settings, results: Iterable[PredictionResult]) -> int:
    return await produce(
        settings, "predictions.results", ((r.request_id.encode(), wire(r)) for r in results)
    )


async def produce_outcomes(settings: Settings, outcomes: Iterable[PredictionOutcome]) -> int:
    return await produce(
        settings, "predictions.outcomes", ((o.request_id.encode(), wire(o)) for o in outcomes)
    )


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the monitor database as an outside user would (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def counted(db: Path) -> int:
    """Results counted so far in the monitor database (0 while it does not exist yet)."""
    try:
        return int(query(db, "SELECT COALESCE(SUM(requests), 0) FROM variant_minute")[0][0])
    except sqlite3.OperationalError:  # no file or no schema yet: the monitor is starting
        return 0


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
