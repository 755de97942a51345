"""Fixtures of the prediction-path tests: registry events, trained models, a running consumer.

Registry state is set up the way the decider would write it: commands are decided with
``registry.core.rules.decide`` against a local ``RegistryState`` and the events are produced to
``registry.events`` (key: model id, ``type`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from consumers.predictor import PredictionConsumer
from registry.core import codec
from registry.core.errors import Rejection
from registry.core.messages import (
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    CommandBase,
    EventBase,
    RegisterModel,
    StartABTest,
    StartABTestPayload,
)
from registry.core.predictions import PredictionResult
from registry.core.rules import decide
from registry.core.state import RegistryState
from registry.core.types import ModelConfig, Status
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of
from registry.infra.settings import PredictorSettings, Settings
from tests.helpers import read_topic

FEATURES = ["visits", "emails_opened", "company_size", "budget_k"]


# --------------------------------------------------------------------------- models


def _lead_data(n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.poisson(5, n), rng.poisson(3, n), rng.integers(1, 500, n), rng.uniform(0, 200, n)]
    ).astype(float)
    logit = 0.3 * x[:, 0] + 0.5 * x[:, 1] + 0.002 * x[:, 2] + 0.01 * x[:, 3] - 4
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


@pytest.fixture(scope="session")
def lead_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two lead-scoring models trained here: ``champion`` (logistic regression) and
    ``challenger`` (a small random forest), plus ``regressor`` (linear regression)."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = _lead_data(2000, seed=7)
    folder = tmp_path_factory.mktemp("models")
    paths = {
        "champion": folder / "lead-lr.joblib",
        "challenger": folder / "lead-rf.joblib",
        "regressor": folder / "revenue-lr.joblib",
    }
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), paths["champion"])
    joblib.dump(
        RandomForestClassifier(n_estimators=10, max_depth=4, random_state=1).fit(x, y),
        paths["challenger"],
    )
    joblib.dump(LinearRegression().fit(x, x[:, 3] * 3.0 + 10), paths["regressor"])
    return paths


def lead_input(i: int) -> dict[str, float]:
    """A deterministic lead's features."""
    return {
        "visits": i % 11,
        "emails_opened": (i * 7) % 5,
        "company_size": (i * 37) % 480 + 1,
        "budget_k": (i * 13) % 190,
    }


def sklearn_config(
    model_id: str, path: Path, *, status: str = "active", version: str = "1.0.0", **extra: Any
) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "name": f"Lead scoring {model_id}",
            "version": version,
            "type": extra.pop("type", "classification"),
            "provider": "scikit-learn",
            "status": status,
            "providerConfig": {
                "provider": "scikit-learn",
                "modelPath": str(path),
                "features": FEATURES,
                **extra,
            },
        }
    )


def custom_config(
    model_id: str, function: str, *, status: str = "active", **settings: Any
) -> ModelConfig:
    """A ``custom`` provider model calling ``function`` (``module:name``)."""
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "name": model_id,
            "version": "1.0.0",
            "type": settings.pop("type", "classification"),
            "provider": "custom",
            "status": status,
            "providerConfig": {"provider": "custom", "callable": function, **settings},
        }
    )


# --------------------------------------------------------------------------- registry


class RegistryWriter:
    """Decides commands on a local state and produces the events, like the decider."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.state = RegistryState()

    async def execute(self, command: CommandBase) -> list[EventBase]:
        decision = decide(command, self.state, now=datetime.now(UTC), allow_clear=True)
        assert not isinstance(decision, Rejection), decision
        for event in decision:
            self.state.apply_event(event)
            await self.publish(event)
        return list(decision)

    async def publish(self, event: EventBase) -> None:
        await self.producer.send_and_wait(
            self.settings.topic("registry.events"),
            codec.encode(event),
            key=event.model_id.encode(),
            headers=codec.headers_for(event),
        )

    async def register(self, config: ModelConfig) -> None:
        await self.execute(RegisterModel(model_id=config.id, payload=config, actor="test"))

    async def status(self, model_id: str, status: str) -> None:
        await self.execute(
            ChangeStatus(
                model_id=model_id, payload=ChangeStatusPayload(status=Status(status)), actor="test"
            )
        )

    async def start_test(
        self, challenger: str, champion: str, traffic: float, routing: str = "hash"
    ) -> str:
        payload = StartABTestPayload(
            champion_model_id=champion, traffic_percentage=traffic, routing=routing
        )
        (event,) = await self.execute(
            StartABTest(model_id=challenger, payload=payload, actor="test")
        )
        return str(event.payload.test_id)  # type: ignore[attr-defined]

    async def traffic(self, challenger: str, traffic: float) -> None:
        await self.execute(
            ChangeABTraffic(
                model_id=challenger,
                payload=ChangeABTrafficPayload(traffic_percentage=traffic),
                actor="test",
            )
        )


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(settings, linger_ms=5)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
def registry(settings: Settings, producer: AIOKafkaProducer) -> RegistryWriter:
    return RegistryWriter(settings, producer)


# --------------------------------------------------------------------------- requests/results


def request_bytes(
    request_id: str, model_id: str, input: Any, unit_id: str | None = None, **extra: Any
) -> bytes:  # noqa: A002
    body: dict[str, Any] = {
        "type": "PredictionRequest",
        "id": request_id,
        "model_id": model_id,
        "input": input,
        **extra,
    }
    if unit_id is not None:
        body["unit_id"] = unit_id
    return orjson.dumps(body)


async def send_requests(
    settings: Settings,
    producer: AIOKafkaProducer,
    items: Sequence[tuple[bytes | None, bytes | None]],
) -> None:
    """Produce (key, value) pairs to predictions.requests and wait for every ack."""
    topic = settings.topic("predictions.requests")
    futures = [
        await producer.send(topic, value, key=key, headers=[("type", b"PredictionRequest")])
        for key, value in items
    ]
    await asyncio.gather(*futures)


async def collect_results(
    settings: Settings, expected: int, timeout: float = 60.0
) -> list[PredictionResult]:
    """Read predictions.results from the start until ``expected`` distinct request ids are seen;
    returns every result read (duplicates included), each validated as a ``PredictionResult``."""
    consumer = make_consumer(settings, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.topic("predictions.results"))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        results: list[PredictionResult] = []
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=20000)
            for records in batch.values():
                for record in records:
                    assert dict(record.headers).get("type") == b"PredictionResult"
                    result = PredictionResult.model_validate_json(record.value)
                    results.append(result)
                    seen.add(result.request_id)
        assert len(seen) >= expected, f"only {len(seen)} of {expected} results within {timeout}s"
        return results
    finally:
        await consumer.stop()


async def dlq_records(settings: Settings) -> list[Any]:
    return await read_topic(settings, "predictions.requests.dlq")


@contextlib.asynccontextmanager
async def running_consumer(settings: Settings, **kwargs: Any) -> AsyncIterator[PredictionConsumer]:
    """A PredictionConsumer running as a task until the block ends (then stopped cleanly)."""
    config = kwargs.pop("config", None) or PredictorSettings(
        session_timeout_ms=6000, provider_backoff_s=0.01, assignment="all"
    )
    consumer = PredictionConsumer(settings, config=config, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    ready = asyncio.create_task(consumer.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the start-up error
    assert ready in done, "the consumer did not become ready within 30 s"
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PREDICTOR_* variables leak in from the environment."""
    import os

    for name in list(os.environ):
        if name.startswith("PREDICTOR_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --------------------------------------------------------------------------- grants
# What the prediction-path tests use, granted as an operator would (docs/security-providers.md):
# the callables of tests/consumers/custom_models.py, the folder of the trained models (joblib
# files: pickles allowed), the loopback servers' address and the TEST_ variables.
# tests/consumers/test_grants_*.py show what happens without.

from registry.infra.settings import GrantSettings  # noqa: E402 - this section's own import

CUSTOM_CALLABLES = tuple(
    f"tests.consumers.custom_models:{name}"
    for name in (
        "score",
        "score_v2",
        "async_score",
        "batch_score",
        "batch_wrong_length",
        "broken",
        "crashes",
        "slow",
        "flaky",
        "not_json",
        "NOT_CALLABLE",
    )
)
UNKNOWN_DIGEST = "0" * 64
"""The pin of a model file that does not exist (a registration carries one all the same)."""

_sklearn_config_unpinned = sklearn_config


def sklearn_config(  # noqa: F811 - the same helper, pinning the file's digest as a model must
    model_id: str, path: Path, **extra: Any
) -> ModelConfig:
    if "modelSha256" not in extra:
        from consumers.providers.files import file_digest

        extra["modelSha256"] = file_digest(path) if Path(path).is_file() else UNKNOWN_DIGEST
    return _sklearn_config_unpinned(model_id, path, **extra)


def grants_for(*model_roots: Path) -> GrantSettings:
    """The grants of these tests: the test callables, ``model_roots`` (pickles allowed),
    127.0.0.1 and the ``TEST_`` variables."""
    return GrantSettings(
        callables=CUSTOM_CALLABLES,
        model_roots=model_roots,
        allow_pickle=True,
        env_prefixes=("MODEL_SECRET_", "TEST_"),
        hosts=("127.0.0.1",),
    )


@pytest.fixture
def settings(
    settings: Settings, lead_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The shared settings with the grants of these tests; also in the environment, for the
    consumers the tests start as processes."""
    grants = grants_for(lead_models["champion"].parent)
    monkeypatch.setenv("REGISTRY_GRANTS_CALLABLES", ",".join(grants.callables))
    monkeypatch.setenv("REGISTRY_GRANTS_MODEL_ROOTS", ",".join(map(str, grants.model_roots)))
    monkeypatch.setenv("REGISTRY_GRANTS_ALLOW_PICKLE", "1")
    monkeypatch.setenv("REGISTRY_GRANTS_ENV_PREFIXES", ",".join(grants.env_prefixes))
    monkeypatch.setenv("REGISTRY_GRANTS_HOSTS", ",".join(grants.hosts))
    return settings.with_(grants=grants)
