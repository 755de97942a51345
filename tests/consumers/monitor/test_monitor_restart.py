"""Positions live in SQLite with the rows: kill -9 and restart never double counts, and a
prediction log that comes back empty (the embedded broker restarted) is read from its start."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from consumers.monitor.service import Monitor
from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import MonitorSettings, Settings
from tests.consumers.monitor.streams import (
    T0,
    ab_test_events,
    counted,
    outcome,
    produce_events,
    produce_outcomes,
    produce_results,
    query,
    result,
)
from tests.helpers import eventually


def _spawn(settings: Settings, db: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_FETCH_MAX_WAIT_MS": "20",
        "REGISTRY_MONITOR_MAX_RECORDS": "50",  # many small transactions: the kill lands mid-stream
    }
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "model_registry", "monitor", "--no-metrics", "--db", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


async def test_kill_9_mid_stream_and_restart_counts_everything_once(
    settings: Settings, tmp_path: Path
) -> None:
    db, log = tmp_path / "monitor.db", tmp_path / "monitor.log"
    events, test_id = ab_test_events(pct=25)
    await produce_events(settings, events)
    n = 12_000
    results = [
        result(
            f"q{i}",
            "challenger" if i % 4 == 0 else "champion",
            test_id,
            output=i % 2 == 0,
            error="Boom" if i % 50 == 0 else None,
            at=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]
    await produce_results(settings, results[: n // 2])
    await produce_outcomes(settings, (outcome(r.request_id, True) for r in results[: n // 2]))
    proc = _spawn(settings, db, log)
    try:
        await eventually(lambda: counted(db) >= 500, timeout=60)
        proc.send_signal(signal.SIGKILL)  # no chance to save anything but what is committed
        proc.wait(10)
        killed_at = counted(db)
        assert 0 < killed_at < n // 2, "the kill should land mid-stream"
        await produce_results(settings, results[n // 2 :])
        await produce_outcomes(settings, (outcome(r.request_id, True) for r in results[n // 2 :]))
        proc = _spawn(settings, db, log)
        await eventually(lambda: counted(db) >= n, timeout=90)
        # Let it see the rest of the log once more, then check nothing moved past n.
        await eventually(
            lambda: (
                query(db, "SELECT COALESCE(SUM(scored + unscorable), 0) FROM variant_quality")[0][0]
                >= n
            ),
            timeout=60,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert query(
        db,
        "SELECT variant, SUM(requests), SUM(errors) FROM variant_minute GROUP BY variant ORDER BY "
        "variant",
    ) == [
        ("challenger", n // 4, len([i for i in range(0, n, 4) if i % 50 == 0])),
        ("champion", n - n // 4, len([i for i in range(n) if i % 4 and i % 50 == 0])),
    ]
    scored, unscorable = query(db, "SELECT SUM(scored), SUM(unscorable) FROM variant_quality")[0]
    assert scored + unscorable == n
    assert unscorable == n // 50
    assert query(
        db, "SELECT COALESCE(SUM(value), 0) FROM monitor_counters WHERE name LIKE 'duplicate%'"
    ) == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM pending_outcomes") == [(0,)]


@pytest.mark.embedded_only
async def test_prediction_log_restarted_empty_keeps_metrics_and_reads_the_new_log(
    settings: Settings, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("simulates the memory-only embedded broker coming back empty")
    events, test_id = ab_test_events(pct=20)
    config = MonitorSettings(max_records=2000)
    await produce_events(settings, events)
    await produce_results(
        settings, [result(f"old{i}", "champion", test_id, output=1) for i in range(120)]
    )
    first = Monitor(settings, db_path, config)
    await first.catch_up()
    await first.close()
    assert counted(db_path) == 120

    # `model-registry up` again: a fresh memory-only broker, the registry log restored, the
    # prediction topics empty (same names), then a little new traffic (fewer than before).
    with EmbeddedBroker() as broker:
        fresh = settings.with_(bootstrap_servers=broker.bootstrap_servers)
        await ensure_topics(fresh)
        await produce_events(fresh, events)
        await produce_results(
            fresh, [result(f"new{i}", "challenger", test_id, output=1) for i in range(12)]
        )
        second = Monitor(fresh, db_path, config)
        try:
            with caplog.at_level(logging.WARNING, logger="consumers.monitor.service"):
                await second.catch_up()
            assert second.stats.log_resets >= 1
            assert any("shorter than the monitor's position" in m for m in caplog.messages)
            assert query(
                db_path,
                "SELECT variant, SUM(requests) FROM variant_minute GROUP BY variant ORDER BY "
                "variant",
            ) == [
                ("challenger", 12),
                ("champion", 120),
            ]
            stored = dict(
                ((t, p), o)
                for t, p, o in query(
                    db_path, "SELECT topic, partition, next_offset FROM checkpoints"
                )
            )
            assert sum(o for (t, _), o in stored.items() if t.endswith("predictions.results")) == 12
            assert (
                query(db_path, "SELECT COUNT(*) FROM log_resets")[0][0] == second.stats.log_resets
            )
            # And it carries on with the new log.
            await produce_results(
                fresh, [result(f"newer{i}", "challenger", test_id, output=1) for i in range(5)]
            )
            await second.catch_up()
            assert counted(db_path) == 137
        finally:
            await second.close()
