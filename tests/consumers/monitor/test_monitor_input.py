"""Bad input, duplicates, late and orphan outcomes: nothing is lost, nothing counted twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.monitor.service import Monitor
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    CHAMPION,
    ab_test_events,
    outcome,
    produce,
    produce_events,
    produce_outcomes,
    produce_results,
    query,
    result,
    wire,
)
from tests.helpers import read_topic


async def test_unreadable_records_go_to_the_dlq_with_a_reason(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    good = result("ok-1", "none", None, output=0.5)
    bad_results = [
        (b"k1", b"not json"),
        (b"k2", b"[1, 2, 3]"),
        (b"k3", orjson.dumps({"type": "PredictionResult", "id": "x"})),  # fields missing
        (b"k4", None),  # a tombstone
        (b"k5", wire(good).replace(b'"variant":"none"', b'"variant":"purple"')),
    ]
    bad_outcomes = [
        (b"o1", b"{"),
        (b"o2", orjson.dumps({"type": "PredictionOutcome", "request_id": "r", "actual": [1]})),
    ]
    await produce(settings, "predictions.results", bad_results)
    await produce(settings, "predictions.outcomes", bad_outcomes)
    await produce_results(settings, [good])
    monitor = make_monitor()
    await monitor.catch_up()
    assert monitor.stats.dlq == 7
    assert monitor.stats.results == 1  # the good one is counted despite its bad neighbours
    dlq = await read_topic(settings, "predictions.results.dlq")
    assert sorted(r.key for r in dlq) == [b"k1", b"k2", b"k3", b"k4", b"k5"]
    reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in dlq}
    assert "Invalid JSON" in reasons[b"k1"]
    assert "should be an object" in reasons[b"k2"]
    assert "request_id: Field required" in reasons[b"k3"]
    assert "empty message" in reasons[b"k4"]
    assert "variant" in reasons[b"k5"]
    assert all(
        dict(r.headers)["dlq.source.topic"] == settings.topic("predictions.results").encode()
        for r in dlq
    )
    out_dlq = await read_topic(settings, "predictions.outcomes.dlq")
    assert sorted(r.key for r in out_dlq) == [b"o1", b"o2"]
    assert query(db_path, "SELECT value FROM monitor_counters WHERE name = 'dlq'") == [(7,)]
    # Positions moved past the bad records: a restart does not send them again.
    await monitor.close()
    again = make_monitor()
    await again.catch_up()
    assert again.stats.dlq == 7
    assert len(await read_topic(settings, "predictions.results.dlq")) == 5


async def test_duplicates_count_once_and_orphan_outcomes_wait_then_expire(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    r1 = result("a", "champion", test_id, output="won")
    r2 = result("b", "challenger", test_id, output="lost")
    await produce_results(settings, [r1, r1, r2])  # a redelivered result
    await produce_outcomes(
        settings, [outcome("a", "won"), outcome("a", "lost"), outcome("ghost", "won")]
    )
    monitor = make_monitor(expire_every_s=3600)
    await monitor.catch_up()
    s = monitor.stats
    assert (s.results, s.duplicate_results) == (2, 1)
    assert (s.outcomes_joined, s.duplicate_outcomes, s.outcomes_pending) == (1, 1, 1)
    assert query(db_path, "SELECT SUM(requests) FROM variant_minute") == [(2,)]
    # The first outcome of a request wins: "a" was right.
    assert query(db_path, "SELECT variant, scored, correct FROM variant_quality") == [
        ("champion", 1, 1)
    ]
    assert query(db_path, "SELECT request_id FROM pending_outcomes") == [("ghost",)]
    # The late result of an outcome that waited is joined when it comes.
    await produce_results(settings, [result("ghost", "challenger", test_id, output="lost")])
    await monitor.catch_up()
    assert monitor.stats.outcomes_pending == 0
    assert query(
        db_path, "SELECT variant, scored, correct FROM variant_quality ORDER BY variant"
    ) == [
        ("challenger", 1, 0),
        ("champion", 1, 1),
    ]
    await monitor.close()
    # An outcome whose result never comes expires after its TTL, and is counted.
    await produce_outcomes(settings, [outcome("never", 1)])
    waiting = make_monitor(expire_every_s=3600)
    await waiting.catch_up()
    assert waiting.stats.outcomes_pending == 1
    await waiting.close()
    expiring = make_monitor(outcome_ttl_s=0.0, expire_every_s=0.0)
    await expiring.catch_up()
    assert expiring.stats.outcomes_expired == 1
    assert expiring.stats.outcomes_pending == 0
    assert query(db_path, "SELECT value FROM monitor_counters WHERE name = 'outcomes_expired'") == [
        (1,)
    ]
    assert query(db_path, "SELECT COUNT(*) FROM pending_outcomes") == [(0,)]


async def test_regression_outcomes_give_mae_and_mse(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(
        pct=50, model_type="regression", champion="revenue-v1", challenger="revenue-v2"
    )
    await produce_events(settings, events)
    kw = {"champion": "revenue-v1", "challenger": "revenue-v2"}
    results = [
        result(f"r{i}", "champion", test_id, output={"prediction": 100.0 + 2}, **kw)
        for i in range(50)
    ]
    results += [
        result(f"s{i}", "challenger", test_id, output=[{"value": 100.0 + (i % 2) * 4}], **kw)
        for i in range(50)
    ]
    await produce_results(settings, results)
    await produce_outcomes(settings, [outcome(r.request_id, 100.0) for r in results])
    monitor = make_monitor()
    await monitor.catch_up()
    rows = query(db_path, "SELECT variant, mae, mse FROM ab_variant_summary ORDER BY variant")
    # champion: always off by 2; challenger: off by 0 or 4.
    assert rows == [("challenger", 2.0, 8.0), ("champion", 2.0, 4.0)]
    from consumers.monitor.report import build_report

    r = build_report(db_path, "revenue-v1")
    assert r.quality is not None
    assert r.quality.metric == "MAE"
    assert r.quality.difference is not None
    assert r.quality.difference.estimate == 0.0
    assert r.quality.finding is None


async def test_results_outside_tests_are_counted_per_model(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    await produce_results(
        settings,
        [
            result("x1", "none", None, output=1, cached=True),
            result("x2", "none", None, error="Timeout", fallback="mock"),
        ],
    )
    await make_monitor().catch_up()
    assert query(
        db_path,
        "SELECT test_id, variant, model_id, requests, errors, cache_hits FROM variant_minute_stats",
    ) == [("", "none", CHAMPION, 2, 1, 1)]
    assert query(db_path, "SELECT code, count FROM variant_errors") == [("Timeout", 1)]
    assert query(db_path, "SELECT SUM(fallbacks) FROM variant_minute") == [(1,)]


async def test_mock_fallbacks_count_as_fallbacks_but_are_not_scored(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    mock = result(
        "m1", "none", None, output={"label": 1, "score": 0.9, "mock": True}, fallback="mock"
    )
    real = result("m2", "none", None, output={"label": 1, "score": 0.9})
    await produce_results(settings, [mock, real])
    await produce_outcomes(settings, [outcome("m1", 1), outcome("m2", 1)])
    await make_monitor().catch_up()
    assert query(db_path, "SELECT SUM(fallbacks) FROM variant_minute") == [(1,)]
    assert query(db_path, "SELECT scored, correct, unscorable FROM variant_quality") == [(1, 1, 1)]


async def test_a_one_megabyte_outcome_is_dead_lettered_as_a_reference_and_the_monitor_goes_on(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    huge = orjson.dumps(
        {"type": "PredictionOutcome", "request_id": "big", "actual": "x" * (1 << 20)}
    )
    events, test_id = ab_test_events(pct=50)
    await produce_events(settings, events)
    await produce_results(settings, [result("a", "champion", test_id, output="won")])
    await produce(settings, "predictions.outcomes", [(b"big", huge)])
    await produce_outcomes(settings, [outcome("a", "won")])
    monitor = make_monitor()
    await monitor.catch_up()
    s = monitor.stats
    assert (s.dlq, s.outcomes_dlq, s.dlq_failed) == (1, 1, 0)
    assert (s.outcomes, s.outcomes_joined) == (1, 1)  # the good neighbour is counted
    (dead,) = await read_topic(settings, "predictions.outcomes.dlq")
    headers = dict(dead.headers)
    assert headers["dlq.form"] == b"reference"
    assert headers["dlq.source.offset"] == b"0"
    assert headers["dlq.source.bytes"] == str(len(huge) + len(b"big")).encode()
    assert b"over the limit" in headers["dlq.reason"]
    assert b"xxxx" not in headers["dlq.reason"]  # a reason never quotes the record
    excerpt = int(headers["dlq.excerpt.bytes"])
    assert excerpt == settings.limits.dlq_excerpt_bytes
    assert dead.value.startswith(b"DLQ-REFERENCE: excerpt of the first ")
    assert dead.value.endswith(huge[:excerpt])
    await monitor.close()
    again = make_monitor()
    await again.catch_up()  # the position passed it: not dead-lettered twice
    assert again.stats.dlq == 1
    assert len(await read_topic(settings, "predictions.outcomes.dlq")) == 1


async def test_numbers_the_store_cannot_keep_are_refused_not_fatal(
    settings: Settings, db_path: Path, make_monitor: Callable[..., Monitor]
) -> None:
    good = wire(result("ok", "none", None, output=1))
    bad_results = [
        (b"r1", good.replace(b'"latency_ms":10.0', b'"latency_ms":1e400')),
        (
            b"r2",
            good.replace(b'"request_id":"ok"', b'"request_id":"r2"').replace(
                b'"output":1', b'"output":1180591620717411303424'
            ),
        ),
    ]
    bad_outcomes = [
        (b"o1", b'{"request_id":"ok","actual":NaN}'),
        (b"o2", b'{"request_id":"ok","actual":-1e400}'),
        (b"o3", b'{"request_id":"ok","actual":1180591620717411303424}'),
    ]
    await produce(settings, "predictions.results", [(b"ok", good), *bad_results])
    await produce(settings, "predictions.outcomes", bad_outcomes)
    await produce_outcomes(settings, [outcome("r2", 1)])
    monitor = make_monitor()
    await monitor.catch_up()
    s = monitor.stats
    assert (s.results, s.results_dlq) == (2, 1)  # r2 counts: its odd output is unscorable
    assert (s.outcomes, s.outcomes_dlq) == (1, 3)
    assert query(db_path, "SELECT scored, unscorable FROM variant_quality") == [(0, 1)]
    reasons = [
        dict(r.headers)["dlq.reason"]
        for r in await read_topic(settings, "predictions.outcomes.dlq")
    ]
    assert all(b"not a finite number" in r for r in reasons)


async def test_a_record_the_store_cannot_apply_is_isolated_and_dead_lettered(
    settings: Settings,
    db_path: Path,
    make_monitor: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumers.monitor.store import MonitorStore

    real = MonitorStore._insert_results

    def poisoned(self: MonitorStore, results: list[Any], *args: Any) -> Any:
        if any(r.request_id == "poison" for r in results):
            raise OverflowError("a value the store cannot write")
        return real(self, results, *args)

    monkeypatch.setattr(MonitorStore, "_insert_results", poisoned)
    await produce_results(
        settings,
        [result(f"r{i}", "none", None, output=1) for i in range(5)]
        + [result("poison", "none", None, output=1)]
        + [result(f"s{i}", "none", None, output=1) for i in range(5)],
    )
    monitor = make_monitor()
    await monitor.catch_up()
    assert (monitor.stats.results, monitor.stats.results_dlq) == (10, 1)
    (dead,) = await read_topic(settings, "predictions.results.dlq")
    assert dead.key == b"poison"
    assert (
        dict(dead.headers)["dlq.reason"] == b"PredictionResult could not be stored (OverflowError)"
    )
    assert query(db_path, "SELECT SUM(requests) FROM variant_minute") == [(10,)]
    await monitor.close()
    again = make_monitor()
    await again.catch_up()
    assert again.stats.results == 10  # positions committed with the rest: nothing repeated


async def test_a_dead_letter_that_cannot_be_written_is_counted_and_the_monitor_goes_on(
    settings: Settings,
    db_path: Path,
    make_monitor: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaTimeoutError

    real_send = AIOKafkaProducer.send

    async def refusing(self: AIOKafkaProducer, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic.endswith(".dlq"):
            raise KafkaTimeoutError()
        return await real_send(self, topic, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaProducer, "send", refusing)
    await produce(settings, "predictions.outcomes", [(b"o1", b"{not json")])
    await produce_outcomes(settings, [outcome("x", 1)])
    monitor = make_monitor()
    await monitor.catch_up()
    s = monitor.stats
    assert (s.outcomes, s.dlq, s.dlq_failed) == (1, 0, 1)
    assert query(db_path, "SELECT value FROM monitor_counters WHERE name = 'dlq_failed'") == [(1,)]
