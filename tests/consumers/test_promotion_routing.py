"""The prediction consumer follows aliases, promotions, rollbacks and shadow tests.

Against the real broker: the registry's events are produced as the decider would (the
``RegistryWriter`` decides with the real rules), requests go to ``predictions.requests``,
and results are read back from ``predictions.results`` and ``predictions.shadow``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from registry.core.messages import (
    AliasPayload,
    AssignAlias,
    PromoteChallenger,
    RollbackPromotion,
    StartABTest,
    StartABTestPayload,
)
from registry.core.predictions import PredictionResult
from registry.infra.settings import Settings
from tests.consumers.conftest import (
    RegistryWriter,
    collect_results,
    lead_input,
    request_bytes,
    running_consumer,
    send_requests,
    sklearn_config,
)
from tests.helpers import eventually, read_topic

PROD = "lead-scoring@production"


async def _requests(
    settings: Settings, producer: AIOKafkaProducer, prefix: str, model: str, n: int
) -> None:
    items = [
        (f"lead-{i}".encode(), request_bytes(f"{prefix}-{i}", model, lead_input(i), f"lead-{i}"))
        for i in range(n)
    ]
    await send_requests(settings, producer, items)


def _by_request(results: list[PredictionResult], prefix: str) -> list[PredictionResult]:
    return [r for r in results if r.request_id.startswith(f"{prefix}-")]


async def test_aliases_and_promoted_ids_are_served_by_the_promoted_model_with_provenance(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-scoring-v1", lead_models["champion"]))
    await registry.register(
        sklearn_config("lead-scoring-v2", lead_models["challenger"], version="2.0.0")
    )
    await registry.execute(
        AssignAlias(model_id="lead-scoring-v1", payload=AliasPayload(alias=PROD), actor="test")
    )
    async with running_consumer(settings):
        await _requests(settings, producer, "before", PROD, 20)
        results = _by_request(await collect_results(settings, 20), "before")
        assert {(r.served_model_id, r.alias, r.resolved_model_id) for r in results} == {
            ("lead-scoring-v1", PROD, "lead-scoring-v1")
        }
        assert {r.requested_model_id for r in results} == {PROD}

        await registry.execute(
            StartABTest(
                model_id="lead-scoring-v2",
                payload=StartABTestPayload(
                    champion_model_id="lead-scoring-v1", traffic_percentage=20
                ),
                actor="test",
            )
        )
        await registry.execute(PromoteChallenger(model_id="lead-scoring-v2", actor="test"))
        # the deprecated champion's id and the alias both lead to v2 now
        await _requests(settings, producer, "old-id", "lead-scoring-v1", 20)
        await _requests(settings, producer, "alias", PROD, 20)
        results = await collect_results(settings, 60)
        old_id, alias = _by_request(results, "old-id"), _by_request(results, "alias")
        assert len(old_id) == 20
        assert len(alias) == 20
        for r in old_id + alias:
            assert r.error is None, r.error
            assert (r.served_model_id, r.served_version) == ("lead-scoring-v2", "2.0.0")
            assert r.resolved_model_id == "lead-scoring-v2"
            assert r.variant == "none"  # the test ended with the promotion
        assert {r.alias for r in old_id} == {None}
        assert {r.requested_model_id for r in old_id} == {"lead-scoring-v1"}
        assert {r.alias for r in alias} == {PROD}

        await registry.execute(RollbackPromotion(model_id="lead-scoring-v2", actor="test"))
        await _requests(settings, producer, "rolled", PROD, 10)
        await _requests(settings, producer, "rolled-v2", "lead-scoring-v2", 10)
        results = await collect_results(settings, 80)
        for r in _by_request(results, "rolled") + _by_request(results, "rolled-v2"):
            assert (r.served_model_id, r.served_version) == ("lead-scoring-v1", "1.0.0"), r


async def test_an_unknown_alias_is_a_clear_not_found(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    async with running_consumer(settings):
        await send_requests(settings, producer, [(None, request_bytes("r1", "nobody@prod", {}))])
        (result,) = await collect_results(settings, 1)
    assert result.error is not None
    assert result.error.code == "ModelNotFound"
    assert "no model has the alias 'nobody@prod'" in result.error.message


async def test_a_shadow_challenger_sees_mirrored_traffic_and_never_answers(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    await registry.register(
        sklearn_config("lead-v2", lead_models["challenger"], version="2.0.0", status="testing")
    )
    (event,) = await registry.execute(
        StartABTest(
            model_id="lead-v2",
            payload=StartABTestPayload(
                champion_model_id="lead-v1", traffic_percentage=50, mode="shadow"
            ),
            actor="test",
        )
    )
    test_id = event.payload.test_id  # type: ignore[attr-defined]
    n = 200
    async with running_consumer(settings) as consumer:
        await _requests(settings, producer, "s", "lead-v1", n)
        results = await collect_results(settings, n)
        # every caller is answered by the champion; none by the shadow
        assert len({r.request_id for r in results}) == n
        for r in results:
            assert (r.served_model_id, r.variant, r.test_id) == ("lead-v1", "champion", test_id)
        shadows: list[PredictionResult] = []

        async def mirrored() -> bool:
            shadows[:] = [
                PredictionResult.model_validate_json(r.value)
                for r in await read_topic(settings, "predictions.shadow")
            ]
            return len(shadows) == consumer.stats.shadow_results and len(shadows) > 0

        await eventually(mirrored, timeout=30)
    # about half the requests are mirrored, each once, tagged and served by the challenger
    assert 0.35 * n <= len(shadows) <= 0.65 * n
    assert len({s.request_id for s in shadows}) == len(shadows)
    answered = {r.request_id: r for r in results}
    for s in shadows:
        assert (s.variant, s.served_model_id, s.test_id) == ("shadow", "lead-v2", test_id)
        assert s.request_id in answered
        assert s.id != answered[s.request_id].id
        assert s.error is None
    assert consumer.stats.shadow_dropped == 0
    # the shadow challenger is never anyone's answer on predictions.results
    raw = await read_topic(settings, "predictions.results")
    assert all(orjson.loads(r.value)["variant"] != "shadow" for r in raw)
