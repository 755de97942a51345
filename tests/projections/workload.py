"""Registry histories for projection tests, built the way the decider builds them.

Events come from the core's own ``decide`` on a local ``RegistryState`` (each emitted
event applied), with a controlled clock, and are produced to ``registry.events`` with the
model id as key and ``headers_for`` headers — exactly what the single writer does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.core import codec
from registry.core.errors import Rejection
from registry.core.messages import (
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    ClearRegistry,
    ClearRegistryPayload,
    CommandBase,
    ConfigChanges,
    EventBase,
    ReasonPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    StartABTest,
    StartABTestPayload,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.rules import LEGAL_TRANSITIONS, decide
from registry.core.state import RegistryState
from registry.core.types import Metrics, ModelConfig, ModelType, Provider, SemVer, Status
from registry.infra.kafka.clients import make_producer
from registry.infra.settings import Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class History:
    """A growing registry history: ``do(command)`` decides, applies and records the events."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> None:
        self.state = RegistryState()
        self.now = start
        self.step = step
        self.events: list[EventBase] = []

    def do(self, command: CommandBase) -> list[EventBase]:
        """Apply ``command``; raises AssertionError when the rules refuse it."""
        out = self.attempt(command)
        assert out is not None, f"rejected: {command.type}"  # type: ignore[attr-defined]
        return out

    def attempt(self, command: CommandBase) -> list[EventBase] | None:
        """Apply ``command``; None when the rules refuse it."""
        self.now += self.step
        decision = decide(command, self.state, now=self.now, allow_clear=True)
        if isinstance(decision, Rejection):
            return None
        for event in decision:
            self.state.apply_event(event)
            self.events.append(event)
        return list(decision)


def config(
    model_id: str,
    *,
    version: str = "1.0.0",
    status: Status = Status.TRAINING,
    mtype: ModelType = ModelType.CLASSIFICATION,
    provider: Provider = Provider.SCIKIT_LEARN,
    **extra: Any,
) -> ModelConfig:
    """A valid config (credentials, when given, are references)."""
    return ModelConfig(
        id=model_id,
        name=f"Model {model_id}",
        version=version,
        type=mtype,
        provider=provider,
        description="test",
        status=status,
        **extra,
    )


def register(model_id: str, **kw: Any) -> RegisterModel:
    return RegisterModel(model_id=model_id, payload=config(model_id, **kw), actor="tester")


def status(
    model_id: str, to: Status, reason: str | None = None, actor: str = "tester"
) -> ChangeStatus:
    return ChangeStatus(
        model_id=model_id, payload=ChangeStatusPayload(status=to, reason=reason), actor=actor
    )


def _random_command(
    rng: random.Random, h: History, n_models: int, allow_clear: bool
) -> CommandBase:
    models = h.state.models
    mid = f"m{rng.randrange(n_models)}"
    state = models.get(mid)
    actor = rng.choice(("alice", "bob", "ci"))
    if state is None or not state.live:
        version = state.config.version if state is not None else "1.0.0"
        return RegisterModel(
            model_id=mid,
            actor=actor,
            payload=config(
                mid,
                version=version,
                status=rng.choice((Status.TRAINING, Status.TESTING, Status.ACTIVE)),
                mtype=rng.choice((ModelType.CLASSIFICATION, ModelType.NLP)),
                provider=rng.choice(list(Provider)),
                credentials={"apiKey": "env:API_KEY"},
            ),
        )
    roll = rng.random()
    if allow_clear and roll < 0.0005:
        return ClearRegistry(
            payload=ClearRegistryPayload(reason="reset", confirm=True), actor=actor
        )
    if roll < 0.35:
        targets = [
            b for a, b in LEGAL_TRANSITIONS if a is state.status and b is not Status.UNREGISTERED
        ]
        if state.status is Status.DEPRECATED:
            return UnregisterModel(
                model_id=mid, payload=ReasonPayload(reason="grace period over"), actor=actor
            )
        return status(mid, rng.choice(targets), reason=rng.choice((None, "scheduled")), actor=actor)
    if roll < 0.5:
        metrics = Metrics(
            accuracy=round(rng.uniform(50, 99), 2), f1_score=round(rng.uniform(50, 99), 2)
        )
        return RecordMetrics(
            model_id=mid, payload=RecordMetricsPayload(metrics=metrics), actor=actor
        )
    if roll < 0.62:
        v = SemVer(state.config.version)
        nxt = (
            f"{v.major}.{v.minor}.{v.patch + 1}"
            if rng.random() < 0.7
            else f"{v.major}.{v.minor + 1}.0"
        )
        return ReleaseVersion(model_id=mid, payload=ReleaseVersionPayload(version=nxt), actor=actor)
    if roll < 0.72:
        changes = ConfigChanges(
            description=f"d{rng.randrange(1000)}", parameters={"depth": rng.randrange(10)}
        )
        return UpdateConfig(model_id=mid, payload=UpdateConfigPayload(changes=changes), actor=actor)
    if roll < 0.84:
        champion = f"m{rng.randrange(n_models)}"
        return StartABTest(
            model_id=mid,
            actor=actor,
            payload=StartABTestPayload(
                champion_model_id=champion, traffic_percentage=rng.choice((10, 20, 50))
            ),
        )
    if roll < 0.92:
        return ChangeABTraffic(
            model_id=mid,
            payload=ChangeABTrafficPayload(traffic_percentage=rng.choice((5, 25, 40))),
            actor=actor,
        )
    return StopABTest(model_id=mid, payload=ReasonPayload(reason="enough data"), actor=actor)


def random_history(
    n_events: int,
    *,
    seed: int = 1,
    n_models: int = 40,
    allow_clear: bool = True,
    history: History | None = None,
) -> History:
    """A history of exactly ``n_events`` more events mixing every event type."""
    rng = random.Random(seed)
    h = history or History()
    target = len(h.events) + n_events
    while len(h.events) < target:
        h.attempt(_random_command(rng, h, n_models, allow_clear))
    return h


async def produce(
    settings: Settings, events: Sequence[EventBase], *, partition: int | None = None
) -> list[int]:
    """Produce events as the decider does (record time = the event's time); returns offsets."""
    return await produce_raw(
        settings,
        [(e.model_id.encode(), codec.encode(e), codec.headers_for(e)) for e in events],
        partition=partition,
        timestamps=[int(e.occurred_at.timestamp() * 1000) for e in events],
    )


async def produce_raw(
    settings: Settings,
    records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    *,
    partition: int | None = None,
    timestamps: Sequence[int] | None = None,
) -> list[int]:
    """Produce raw (key, value, headers) records to ``registry.events``; returns their offsets."""
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                settings.topic("registry.events"),
                value,
                key=key,
                headers=headers,
                partition=partition,
                timestamp_ms=timestamps[i] if timestamps else None,
            )
            for i, (key, value, headers) in enumerate(records)
        ]
        return [(await f).offset for f in futures]
    finally:
        await producer.stop()
