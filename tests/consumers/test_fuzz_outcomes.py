"""Fuzz the monitor's ``predictions.outcomes`` (and ``predictions.results``): thousands of
mutated records, none stops it, each ends counted or dead-lettered, exactly once.

Accounting, per topic: ``counted + dead-lettered (+ dlq_failed) == sent`` with nothing lost;
dead letters are read back from ``<topic>.dlq`` from offset 0 and matched to the records sent
by their ``dlq.source.offset`` header (each at most once). A valid probe sent afterwards is
counted within a few seconds, and the process's RSS grows by less than ``RSS_BOUND_MB``.
Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson

from consumers.monitor.service import Monitor
from registry.core.predictions import PredictionResult
from registry.infra.kafka.clients import make_producer
from registry.infra.settings import MonitorSettings, Settings
from tests.consumers.monitor.streams import (
    ab_test_events,
    outcome,
    produce_events,
    produce_outcomes,
    produce_results,
    result,
    wire,
)
from tests.helpers import eventually, read_topic
from tests.mutations import mutations

N = 2000
RSS_BOUND_MB = 150
PROBE_WITHIN_S = 5.0


def rss_mb() -> float:
    """The resident set size of this process now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def valid_outcomes() -> list[dict[str, object]]:
    return [
        {"type": "PredictionOutcome", "id": "o", "request_id": "r-1", "actual": True},
        {"type": "PredictionOutcome", "id": "o", "request_id": "r-2", "actual": "won"},
        {
            "type": "PredictionOutcome",
            "id": "o",
            "request_id": "r-3",
            "actual": 12.5,
            "schema_version": 1,
            "occurred_at": "2026-03-02T09:00:00Z",
            "correlation_id": "crm-1",
        },
    ]


def valid_results(test_id: str) -> list[PredictionResult]:
    return [
        result(f"r-{i}", "champion" if i % 2 else "challenger", test_id, output={"label": "won"})
        for i in range(50)
    ]


async def produce_at(settings: Settings, topic: str, values: list[bytes]) -> set[tuple[int, int]]:
    """Send ``values`` (keys ``k<i>``), return the (partition, offset) of each."""
    producer = make_producer(settings, linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(topic), v, key=f"k{i}".encode())
            for i, v in enumerate(values)
        ]
        return {(md.partition, md.offset) for md in await asyncio.gather(*futures)}
    finally:
        await producer.stop()


async def _fuzz(
    settings: Settings, tmp_path: Path, topic: str, values: list[bytes], probe_topic_done: str
) -> None:
    monitor = Monitor(settings, tmp_path / "monitor.db", MonitorSettings(max_records=500))
    stop = asyncio.Event()
    before = rss_mb()
    task = asyncio.create_task(monitor.run(stop))
    sent = len(values)
    s = monitor.stats
    started = time.monotonic()
    positions = await produce_at(settings, topic, values)
    kind = topic.rsplit(".", 1)[-1]  # results / outcomes

    def done() -> bool:
        assert not task.done(), "the monitor stopped"
        handled = getattr(s, kind) + getattr(s, f"{kind}_dlq") + s.dlq_failed
        return handled >= sent + (50 if kind == "results" else 0)

    await eventually(done, timeout=120, what="every fuzzed record handled")
    elapsed = time.monotonic() - started
    counted = getattr(s, kind) - (50 if kind == "results" else 0)
    dead = await read_topic(settings, f"{topic}.dlq")
    sources = Counter(
        (int(dict(r.headers)["dlq.source.partition"]), int(dict(r.headers)["dlq.source.offset"]))
        for r in dead
    )
    assert all(n == 1 for n in sources.values()), "a record was dead-lettered twice"
    assert all(dict(r.headers)["dlq.source.topic"] == settings.topic(topic).encode() for r in dead)
    references = sum(dict(r.headers)["dlq.form"] == b"reference" for r in dead)
    lost = sent - counted - len(sources) - s.dlq_failed
    grown = rss_mb() - before
    print(
        f"\nfuzz {topic}: sent {sent}, counted {counted}, dead-lettered {len(sources)} "
        f"({references} as references), dlq_failed {s.dlq_failed}, lost {lost}; "
        f"{elapsed:.1f}s, RSS +{grown:.0f} MB"
    )
    assert lost == 0
    assert len(sources) == getattr(s, f"{kind}_dlq")
    assert set(sources) <= positions, "a dead letter names a record that was not sent"

    # A valid probe afterwards is counted within a few seconds.
    t0 = time.monotonic()
    joined = s.outcomes_joined  # before sending: a fast broker has the probe joined at once
    await produce_results(settings, [result("probe", "none", None, output=1)])
    await produce_outcomes(settings, [outcome("probe", 1)])
    await eventually(
        lambda: s.outcomes_joined > joined, timeout=PROBE_WITHIN_S, what=probe_topic_done
    )
    print(f"probe counted in {time.monotonic() - t0:.2f}s")
    assert grown < RSS_BOUND_MB
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_fuzzed_outcomes_are_counted_or_dead_lettered_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(settings, valid_results(test_id))
    values = [m.value for m in mutations(valid_outcomes(), seed=20260302, n=N)]
    await _fuzz(settings, tmp_path, "predictions.outcomes", values, "the probe outcome joined")


async def test_fuzzed_results_are_counted_or_dead_lettered_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(settings, valid_results(test_id))  # 50 valid ones first
    bases = [orjson.loads(wire(r)) for r in valid_results(test_id)[:3]]
    bases.append(orjson.loads(wire(result("e", "none", None, error="ProviderTimeout"))))
    values = [m.value for m in mutations(bases, seed=7, n=N, id_field="request_id")]
    await _fuzz(settings, tmp_path, "predictions.results", values, "the probe outcome joined")
