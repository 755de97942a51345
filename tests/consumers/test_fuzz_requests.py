"""Fuzz the prediction consumer's ``predictions.requests``: thousands of mutated requests, none
stops it, each ends answered (a result, ok or error) or dead-lettered, exactly once.

Accounting: results are read from ``predictions.results`` and dead letters from
``predictions.requests.dlq``, both from offset 0; each dead letter is matched to a record
sent by its ``dlq.source.partition``/``dlq.source.offset`` headers (at most once each), each
result to its request id (at most once each: nothing is answered twice). ``answered +
dead-lettered + duplicates == sent`` with nothing lost; a valid probe sent afterwards is
answered within a few seconds; the process's RSS grows by less than ``RSS_BOUND_MB``. Run
with ``-s`` to see the counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from consumers.predictor import PredictionConsumer
from registry.core.predictions import PredictionResult
from registry.infra.kafka.clients import make_producer
from registry.infra.settings import PredictorSettings, Settings
from tests.consumers.conftest import (
    RegistryWriter,
    collect_results,
    custom_config,
    lead_input,
    request_bytes,
    running_consumer,
    sklearn_config,
)
from tests.helpers import eventually, read_topic
from tests.mutations import KINDS, mutations

N = 2000
RSS_BOUND_MB = 150
PROBE_WITHIN_S = 5.0
CONFIG = PredictorSettings(
    assignment="all", provider_backoff_s=0.001, provider_retries=1, provider_timeout_s=2.0
)


def rss_mb() -> float:
    """The resident set size of this process now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def valid_requests() -> list[dict[str, Any]]:
    return [
        {"type": "PredictionRequest", "id": "x", "model_id": "rules-v1", "input": {"visits": 4}},
        {
            "type": "PredictionRequest",
            "id": "x",
            "model_id": "rules-v2",
            "unit_id": "lead-7",
            "input": {"visits": 6, "emails_opened": 2},
            "correlation_id": "crm-1",
        },
        {
            "type": "PredictionRequest",
            "id": "x",
            "model_id": "lead-v1",
            "unit_id": "lead-9",
            "input": lead_input(9),
            "schema_version": 1,
            "occurred_at": "2026-03-02T09:00:00Z",
        },
        {"type": "PredictionRequest", "id": "x", "model_id": "rules-v1", "input": [1, 2]},
    ]


def test_mutations_are_seeded_and_cover_every_kind() -> None:
    first = list(mutations(valid_requests(), seed=3, n=600))
    assert first == list(mutations(valid_requests(), seed=3, n=600))
    assert first != list(mutations(valid_requests(), seed=4, n=600))
    assert {m.kind for m in first} == set(KINDS)
    ids = [m.id for m in first if m.id is not None]
    assert len(ids) == len(set(ids)), "readable ids are distinct"
    assert any(m.value == b"" for m in first)
    assert any(len(m.value) >= 1 << 20 for m in first)


async def _produce(settings: Settings, values: list[bytes]) -> dict[tuple[int, int], int]:
    """Send ``values`` (keys ``u<i>``), return {(partition, offset): i}."""
    producer = make_producer(settings, linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        topic = settings.topic("predictions.requests")
        futures = [
            await producer.send(topic, v, key=f"u{i}".encode(), headers=[("type", b"x")])
            for i, v in enumerate(values)
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(md.partition, md.offset): i for i, md in enumerate(metadata)}


async def test_fuzzed_requests_are_answered_or_dead_lettered_exactly_once(
    settings: Settings, registry: RegistryWriter, lead_models: dict[str, Path]
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    await registry.register(custom_config("rules-v2", "tests.consumers.custom_models:score_v2"))
    await registry.start_test("rules-v2", "rules-v1", 50)
    await registry.register(sklearn_config("lead-v1", lead_models["champion"]))
    values = [m.value for m in mutations(valid_requests(), seed=20260302, n=N)]
    before = rss_mb()
    async with running_consumer(settings, config=CONFIG) as consumer:
        started = time.monotonic()
        sent_at = await _produce(settings, values)
        s = consumer.stats
        await eventually(
            lambda: s.records >= N and s.in_flight == 0, timeout=90, what="every record finished"
        )
        elapsed = time.monotonic() - started
        results = [
            PredictionResult.model_validate_json(r.value)
            for r in await read_topic(settings, "predictions.results")
        ]
        dead = await read_topic(settings, "predictions.requests.dlq")
        sources = Counter(
            (
                int(dict(r.headers)["dlq.source.partition"]),
                int(dict(r.headers)["dlq.source.offset"]),
            )
            for r in dead
        )
        answered = Counter(r.request_id for r in results)
        references = sum(dict(r.headers)["dlq.form"] == b"reference" for r in dead)
        rejected = sum(r.error is not None and r.error.code == "InvalidRequest" for r in results)
        errors = sum(r.error is not None for r in results)
        lost = N - len(results) - len(sources) - s.duplicates - s.dlq_failed
        grown = rss_mb() - before
        print(
            f"\nfuzz predictions.requests: sent {N}, answered {len(results)} "
            f"({len(results) - errors} ok, {rejected} rejected as InvalidRequest, "
            f"{errors - rejected} other errors), dead-lettered {len(sources)} "
            f"({references} as references), duplicates {s.duplicates}, "
            f"dlq_failed {s.dlq_failed}, lost {lost}; {elapsed:.1f}s, RSS +{grown:.0f} MB"
        )
        assert all(n == 1 for n in sources.values()), "a record was dead-lettered twice"
        assert set(sources) <= set(sent_at), "a dead letter names a record that was not sent"
        assert all(n == 1 for n in answered.values()), "a request was answered twice"
        assert lost == 0
        assert (s.results, s.dead_letters, s.dlq_failed) == (len(results), len(sources), 0)
        assert s.unaccounted() == 0
        assert s.delivery_retries == 0

        # A valid probe afterwards is answered within a few seconds.
        t0 = time.monotonic()
        await _produce(settings, [request_bytes("probe", "rules-v1", {"visits": 9})])
        probe = [
            r for r in await collect_results(settings, len(answered) + 1) if r.request_id == "probe"
        ]
        waited = time.monotonic() - t0
        print(f"probe answered in {waited:.2f}s")
        assert probe
        assert probe[0].error is None
        assert waited < PROBE_WITHIN_S
    assert grown < RSS_BOUND_MB


async def test_a_consumer_restarted_after_fuzzing_finds_nothing_to_redo(
    settings: Settings, registry: RegistryWriter
) -> None:
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    values = [m.value for m in mutations(valid_requests()[:1], seed=11, n=300)]
    async with running_consumer(settings, config=CONFIG) as consumer:
        await _produce(settings, values)
        await eventually(lambda: consumer.stats.records >= 300 and consumer.stats.in_flight == 0)
    # Every offset was committed: a new consumer in the same group reads nothing again.
    again = PredictionConsumer(settings, config=CONFIG)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    await asyncio.wait_for(again.ready.wait(), 30)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert again.stats.records == 0
