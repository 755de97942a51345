"""The prediction consumer against the real broker: split, tags, errors, fallback, cache, dedupe."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from registry.core import codec
from registry.core.messages import ModelStatusChanged, ModelStatusChangedPayload
from registry.core.types import ModelConfig
from registry.infra.kafka.clients import make_consumer, make_producer, partitions_of
from registry.infra.settings import PredictorSettings, Settings
from tests.consumers.conftest import (
    RegistryWriter,
    collect_results,
    custom_config,
    dlq_records,
    lead_input,
    request_bytes,
    running_consumer,
    send_requests,
    sklearn_config,
)
from tests.consumers.loopback import Reply, Request, serve
from tests.helpers import eventually, read_topic

FAST = PredictorSettings(
    assignment="all", provider_backoff_s=0.001, provider_retries=1, provider_timeout_s=2.0
)
GROUP = PredictorSettings(assignment="group", session_timeout_ms=6000)


async def test_champion_challenger_split_over_10000_requests(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-scoring-v1", lead_models["champion"]))
    await registry.register(
        sklearn_config("lead-scoring-v2", lead_models["challenger"], version="2.0.0")
    )
    test_id = await registry.start_test("lead-scoring-v2", "lead-scoring-v1", 20)
    units = 2500
    items = []
    for i in range(10_000):
        unit = f"lead-{i % units}"
        model = (
            "lead-scoring-v2" if i % 10 == 0 else "lead-scoring-v1"
        )  # either id routes by the split
        items.append((unit.encode(), request_bytes(f"req-{i}", model, lead_input(i), unit)))
    async with running_consumer(
        settings, config=GROUP
    ) as consumer:  # as deployed: a consumer group
        await send_requests(settings, producer, items)
        results = await collect_results(settings, 10_000)
    assert len({r.request_id for r in results}) == 10_000

    variants_of_unit: dict[str, set[str]] = defaultdict(set)
    for r in results:
        assert r.error is None
        assert r.fallback is None
        assert r.test_id == test_id
        assert r.split_version == 1
        assert r.requested_model_id in {"lead-scoring-v1", "lead-scoring-v2"}
        expected = (
            ("lead-scoring-v2", "2.0.0")
            if r.variant == "challenger"
            else ("lead-scoring-v1", "1.0.0")
        )
        assert r.variant in {"champion", "challenger"}
        assert (r.served_model_id, r.served_version) == expected
        assert r.provider == "scikit-learn"
        assert r.output["label"] in (0, 1)
        assert 0 <= r.output["score"] <= 1
        assert r.latency_ms >= 0
        assert r.unit_id is not None
        variants_of_unit[r.unit_id].add(r.variant)
    share = sum(r.variant == "challenger" for r in results) / len(results)
    assert 0.17 <= share <= 0.23
    assert all(len(v) == 1 for v in variants_of_unit.values()), "a unit changed variant"
    assert consumer.stats.requests == 10_000
    assert consumer.stats.results == 10_000
    assert consumer.stats.errors == 0


async def test_only_active_models_serve(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-v1", lead_models["champion"], status="testing"))
    await registry.register(sklearn_config("churn-v1", lead_models["champion"]))
    await registry.status("churn-v1", "deprecated")
    async with running_consumer(settings, config=FAST):
        await send_requests(
            settings,
            producer,
            [
                (b"u1", request_bytes("r-testing", "lead-v1", lead_input(1), "u1")),
                (b"u2", request_bytes("r-deprecated", "churn-v1", lead_input(2), "u2")),
                (b"u3", request_bytes("r-unknown", "no-such-model", lead_input(3), "u3")),
            ],
        )
        results = {r.request_id: r for r in await collect_results(settings, 3)}
    assert results["r-testing"].error is not None
    assert results["r-testing"].error.code == "ModelNotActive"
    assert "testing" in results["r-testing"].error.message
    assert results["r-testing"].output is None
    assert results["r-deprecated"].error is not None
    assert results["r-deprecated"].error.code == "ModelNotActive"
    assert results["r-unknown"].error is not None
    assert results["r-unknown"].error.code == "ModelNotFound"
    assert results["r-unknown"].served_model_id is None


async def test_unreadable_requests_go_to_the_dlq_and_the_consumer_goes_on(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    bad = [
        (b"k1", b"\x00\xffnot json"),
        (b"k2", b"[1, 2, 3]"),
        (b"k3", orjson.dumps({"id": "r-no-model", "input": {"visits": 1}})),
        (b"k4", orjson.dumps({"id": "r-bad-model", "model_id": "has spaces!", "input": {}})),
        (b"k5", orjson.dumps({"id": "r-extra", "model_id": "lead-v1", "input": {}, "surprise": 1})),
        (b"k6", orjson.dumps({"id": "r-bad-input", "model_id": "lead-v1", "input": 42})),
        (
            b"k7",
            orjson.dumps(
                {"type": "SomethingElse", "id": "r-wrong-type", "model_id": "lead-v1", "input": {}}
            ),
        ),
        (b"k8", None),
    ]
    good = [(b"u1", request_bytes("r-good", "lead-v1", lead_input(1), "u1"))]
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(settings, producer, [*bad, *good])
        results = {r.request_id: r for r in await collect_results(settings, 6)}
        await eventually(lambda: consumer.stats.dead_letters >= 3)
    assert results["r-good"].error is None
    assert "label" in results["r-good"].output
    # Exactly one end per record: a readable id gets an error result, the rest the DLQ.
    for request_id in ("r-no-model", "r-bad-model", "r-extra", "r-bad-input", "r-wrong-type"):
        error = results[request_id].error
        assert error is not None, request_id
        assert error.code == "InvalidRequest", request_id
    assert "model_id" in results["r-no-model"].error.message  # type: ignore[union-attr]
    dead = await dlq_records(settings)
    assert sorted(r.key for r in dead) == [b"k1", b"k2", b"k8"]
    by_key = {r.key: dict(r.headers) for r in dead}
    assert b"Invalid JSON" in by_key[b"k1"]["dlq.reason"]
    assert b"empty message" in by_key[b"k8"]["dlq.reason"]
    assert by_key[b"k2"]["dlq.source.topic"] == settings.topic("predictions.requests").encode()
    assert by_key[b"k2"]["dlq.form"] == b"copy"
    assert [r.value for r in dead if r.key == b"k2"] == [b"[1, 2, 3]"]  # the original bytes, kept
    s = consumer.stats
    assert (s.records, s.results, s.dead_letters, s.rejected) == (9, 6, 3, 8)
    assert s.unaccounted() == 0


async def test_a_failing_challenger_falls_back_to_the_champion(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    await registry.register(custom_config("rules-v2", "tests.consumers.custom_models:broken"))
    await registry.start_test("rules-v2", "rules-v1", 50)
    items = [
        (f"u{i}".encode(), request_bytes(f"r{i}", "rules-v1", {"visits": i % 9}, f"u{i}"))
        for i in range(200)
    ]
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(settings, producer, items)
        results = await collect_results(settings, 200)
    challenger = [r for r in results if r.variant == "challenger"]
    assert 60 <= len(challenger) <= 140
    for r in challenger:
        assert r.error is None
        assert r.fallback == "champion"
        assert r.served_model_id == "rules-v1"
        assert r.fallback_reason is not None
        assert r.fallback_reason.startswith("ProviderUnavailable")
        assert "unreachable" in r.fallback_reason
    for r in results:
        if r.variant == "champion":
            assert r.fallback is None
            assert r.served_model_id == "rules-v1"
    assert consumer.stats.fallbacks == len(challenger)


async def test_mock_predictions_only_when_configured(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:broken"))
    async with running_consumer(settings, config=FAST):
        await send_requests(
            settings, producer, [(b"u1", request_bytes("r1", "rules-v1", {"visits": 1}, "u1"))]
        )
        (plain,) = await collect_results(settings, 1)
    assert plain.error is not None
    assert plain.error.code == "ProviderUnavailable"
    assert plain.fallback is None
    assert plain.output is None
    async with running_consumer(settings, config=FAST, mock_fallback=True) as consumer:
        await send_requests(
            settings, producer, [(b"u2", request_bytes("r2", "rules-v1", {"visits": 1}, "u2"))]
        )
        results = {r.request_id: r for r in await collect_results(settings, 2)}
    mocked = results["r2"]
    assert mocked.error is None
    assert mocked.fallback == "mock"
    assert mocked.output["mock"] is True
    assert mocked.fallback_reason is not None
    assert mocked.fallback_reason.startswith("ProviderUnavailable")
    assert consumer.config.mock_fallback


async def test_cache_hits_and_dedupe_by_request_id(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    same_input = lead_input(7)
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(
            settings, producer, [(b"u1", request_bytes("r1", "lead-v1", same_input, "u1"))]
        )
        await collect_results(settings, 1)
        await send_requests(
            settings,
            producer,
            [
                (
                    b"u2",
                    request_bytes("r2", "lead-v1", dict(reversed(same_input.items())), "u2"),
                ),  # same input, other order
                (b"u1", request_bytes("r1", "lead-v1", same_input, "u1")),  # a redelivered request
                (b"u1", request_bytes("r1", "lead-v1", same_input, "u1")),
            ],
        )
        results = await collect_results(settings, 2)
        await eventually(lambda: consumer.stats.duplicates >= 2)
    by_id = defaultdict(list)
    for r in results:
        by_id[r.request_id].append(r)
    assert len(by_id["r1"]) == 1, "a duplicate request was answered twice"
    assert by_id["r2"][0].cached is True
    assert by_id["r1"][0].cached is False
    assert by_id["r2"][0].output == by_id["r1"][0].output
    assert consumer.stats.duplicates == 2
    assert consumer.stats.cache_hits == 1


async def test_raising_the_traffic_moves_units_only_to_the_challenger(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    await registry.register(custom_config("rules-v2", "tests.consumers.custom_models:score_v2"))
    await registry.start_test("rules-v2", "rules-v1", 20)
    units = [f"lead-{i}" for i in range(400)]
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(
            settings,
            producer,
            [(u.encode(), request_bytes(f"a-{u}", "rules-v1", {"visits": 1}, u)) for u in units],
        )
        before = {r.unit_id: r for r in await collect_results(settings, 400)}
        await registry.traffic("rules-v2", 60)
        await eventually(  # the view follows registry.events continuously
            lambda: (
                (pair := consumer.view.pair("rules-v2")) is not None
                and pair.test.traffic_percentage == 60
            )
        )
        await send_requests(
            settings,
            producer,
            [(u.encode(), request_bytes(f"b-{u}", "rules-v1", {"visits": 1}, u)) for u in units],
        )
        after = {
            r.unit_id: r
            for r in await collect_results(settings, 800)
            if r.request_id.startswith("b-")
        }
    assert {r.split_version for r in before.values()} == {1}
    assert {r.split_version for r in after.values()} == {2}
    moved = Counter((before[u].variant, after[u].variant) for u in units)
    assert moved[("challenger", "champion")] == 0
    assert moved[("champion", "challenger")] > 100  # 20% -> 60% of 400 units
    assert 0.50 <= sum(r.variant == "challenger" for r in after.values()) / 400 <= 0.70


async def test_a_model_registered_a_moment_before_its_request_is_found(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    async with running_consumer(settings, config=FAST):
        await registry.register(custom_config("late-v1", "tests.consumers.custom_models:score"))
        await send_requests(
            settings, producer, [(b"u", request_bytes("r-late", "late-v1", {"visits": 9}, "u"))]
        )
        (result,) = await collect_results(settings, 1)
    assert result.error is None
    assert result.output == {"label": 1, "score": 0.9}


async def test_a_revision_gap_and_garbage_in_the_log_are_not_believed(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    stray = ModelStatusChanged(
        model_id="rules-v1",
        revision=7,  # the model is at revision 1: a stray writer
        actor="intruder",
        payload=ModelStatusChangedPayload.model_validate({"from": "active", "to": "deprecated"}),
    )
    await registry.publish(stray)
    await producer.send_and_wait(
        settings.topic("registry.events"), b"{not an event", key=b"rules-v1"
    )
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(
            settings, producer, [(b"u", request_bytes("r1", "rules-v1", {"visits": 9}, "u"))]
        )
        (result,) = await collect_results(settings, 1)
        assert consumer.stats.registry_events == 1
        assert consumer.stats.registry_events_skipped == 2
    assert result.error is None, "the stray deprecation was believed"
    assert codec.decode_event(codec.encode(stray)).revision == 7


async def test_requests_without_an_id_get_a_stable_one(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    body = orjson.dumps(
        {"model_id": "rules-v1", "input": {"visits": 2}, "correlation_id": "crm-77"}
    )
    async with running_consumer(settings, config=FAST):
        await send_requests(settings, producer, [(b"u", body)])
        (result,) = await collect_results(settings, 1)
    assert result.request_id.startswith(settings.topic("predictions.requests") + "/")
    assert result.correlation_id == "crm-77"
    assert result.unit_id is None


async def test_progress_and_lag_for_health(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    async with running_consumer(settings, config=FAST) as consumer:
        started = consumer.stats.last_progress_monotonic
        await send_requests(
            settings, producer, [(b"u", request_bytes("r1", "rules-v1", {"visits": 2}, "u"))]
        )
        await collect_results(settings, 1)
        # idle polls that find every partition caught up are progress
        await eventually(lambda: consumer.stats.last_progress_monotonic > started)
        assert consumer.stats.lag == 0
        assert consumer.stats.results == 1
        assert time.monotonic() - consumer.stats.last_progress_monotonic < 1.0


async def test_a_resolved_secret_never_reaches_a_result_or_a_log_line(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "azure-endpoint-key-never-to-be-seen-9431"
    monkeypatch.setenv("TEST_AZURE_KEY", secret)
    caplog.set_level(logging.DEBUG)

    def hostile(req: Request) -> Reply:
        # An endpoint that echoes the request headers (the bearer key) back, in errors and answers.
        rows = req.json()["data"]
        if rows[0].get("fail"):
            return Reply(500, {"message": f"cannot score; headers were {req.headers}"})
        return Reply(200, [{"label": 1, "debug": req.header("authorization")} for _ in rows])

    with serve(hostile) as server:
        config = ModelConfig.model_validate(
            {
                "id": "azure-lead-v1",
                "name": "lead scoring on Azure ML",
                "version": "1.0.0",
                "type": "classification",
                "provider": "azure-ml",
                "status": "active",
                "providerConfig": {
                    "provider": "azure-ml",
                    "endpoint": server.url + "/score",
                    "credentials": {"apiKey": "env:TEST_AZURE_KEY"},
                    "batchSize": 1,
                },
            }
        )
        await registry.register(config)
        async with running_consumer(settings, config=FAST) as consumer:
            await send_requests(
                settings,
                producer,
                [
                    (b"u1", request_bytes("r-ok", "azure-lead-v1", {"visits": 1}, "u1")),
                    (b"u2", request_bytes("r-fail", "azure-lead-v1", {"fail": True}, "u2")),
                ],
            )
            results = {r.request_id: r for r in await collect_results(settings, 2)}
        assert server.requests
        assert all(r.header("authorization") == f"Bearer {secret}" for r in server.requests)
    assert results["r-ok"].output == {"label": 1, "debug": "Bearer ***"}
    failed = results["r-fail"].error
    assert failed is not None
    assert failed.code == "ProviderUnavailable"
    assert "500" in failed.message
    raw = b"".join(r.value or b"" for r in await read_topic(settings, "predictions.results"))
    assert secret.encode() not in raw
    assert secret not in caplog.text
    assert secret not in repr(consumer.stats)
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)


async def test_a_one_megabyte_request_is_refused_once_and_its_batch_goes_on(
    settings: Settings, registry: RegistryWriter
) -> None:
    # Once, its dead letter could not be written (too large), the batch was dropped and the
    # partition rewound every 0.65 s: the same requests were answered again and again.
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    huge_model = orjson.dumps(
        {"type": "PredictionRequest", "id": "r-huge", "model_id": "m" * (1 << 20), "input": {}}
    )
    huge_garbage = b"[" + b"7," * (1 << 19) + b"7]"  # no readable id: the DLQ, as a reference
    items = [(b"u", request_bytes(f"r{i}", "rules-v1", {"visits": i}, "u")) for i in range(10)]
    items += [(b"u", huge_model), (b"u", huge_garbage)]
    items += [(b"u", request_bytes(f"r{i}", "rules-v1", {"visits": i}, "u")) for i in range(10, 20)]
    big = make_producer(settings, max_request_size=8 << 20)
    await big.start()
    try:
        async with running_consumer(settings, config=FAST) as consumer:
            await send_requests(settings, big, items)
            await eventually(lambda: consumer.stats.records == 22 and consumer.stats.in_flight == 0)
            await asyncio.sleep(1.5)  # long enough for a rewind loop to show
            results = await collect_results(settings, 21)
    finally:
        await big.stop()
    counts = Counter(r.request_id for r in results)
    assert counts == Counter([f"r{i}" for i in range(20)] + ["r-huge"]), "answered twice"
    refused = next(r for r in results if r.request_id == "r-huge")
    assert refused.error is not None
    assert refused.error.code == "InvalidRequest"
    assert "over the limit" in refused.error.message
    assert len(refused.requested_model_id) == 256
    (dead,) = await dlq_records(settings)
    assert dict(dead.headers)["dlq.form"] == b"reference"
    assert dead.value.startswith(b"DLQ-REFERENCE")
    s = consumer.stats
    assert (s.results, s.dead_letters, s.rejected, s.delivery_retries) == (21, 1, 2, 0)
    assert s.unaccounted() == 0
    committed = await _committed(settings, f"{settings.topic_prefix}{FAST.group_id}")
    assert sum(committed.values()) == 22  # every offset committed (one key: one partition)


async def test_a_callable_that_raises_or_returns_garbage_costs_its_requests_only(
    settings: Settings, registry: RegistryWriter, producer: AIOKafkaProducer
) -> None:
    await registry.register(custom_config("boom-v1", "tests.consumers.custom_models:crashes"))
    await registry.register(custom_config("odd-v1", "tests.consumers.custom_models:not_json"))
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    big = b'"big":%d' % 2**70  # a number orjson (the cache's hash) cannot encode
    items = [
        (
            f"u{i}".encode(),
            request_bytes(f"r{i}", model, {"visits": 5, "big": 0}, f"u{i}").replace(
                b'"big":0', big
            ),
        )
        for i, model in enumerate(["boom-v1", "odd-v1", "rules-v1"] * 10)
    ]
    async with running_consumer(settings, config=FAST) as consumer:
        await send_requests(settings, producer, items)
        results = {r.request_id: r for r in await collect_results(settings, 30)}
        await eventually(lambda: consumer.stats.in_flight == 0)
    by_model: dict[str, set[str]] = defaultdict(set)
    for r in results.values():
        by_model[r.requested_model_id].add(r.error.code if r.error else "ok")
    assert by_model == {
        "boom-v1": {"ProviderFailed"},
        "odd-v1": {"ProviderBadResponse"},
        "rules-v1": {"ok"},  # an input the cache cannot hash (2**70) is simply not cached
    }
    assert consumer.stats.dead_letters == 0


async def _committed(settings: Settings, group: str) -> dict[int, int]:
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.topic("predictions.requests"))
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def test_one_bad_input_does_not_fail_its_vectorised_neighbours(
    settings: Settings,
    registry: RegistryWriter,
    producer: AIOKafkaProducer,
    lead_models: dict[str, Path],
) -> None:
    # scikit-learn refuses a whole matrix for one NaN: the group is narrowed down by halves.
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    items = [(b"u", request_bytes(f"r{i}", "lead-v1", lead_input(i), "u")) for i in range(40)]
    items[17] = (
        b"u",
        request_bytes("r17", "lead-v1", {**lead_input(17), "visits": 0}, "u").replace(
            b'"visits":0', b'"visits":NaN'
        ),
    )
    async with running_consumer(settings, config=FAST):
        await send_requests(settings, producer, items)
        results = {r.request_id: r for r in await collect_results(settings, 40)}
    failed = {i for i, r in results.items() if r.error is not None}
    assert failed == {"r17"}
    assert results["r17"].error is not None
    assert results["r17"].error.code == "InvalidInput"
