"""The Prometheus endpoint and the health check, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from consumers.monitor.metrics import MetricsServer
from consumers.monitor.service import Monitor
from registry.infra.settings import Settings
from tests.consumers.monitor.streams import (
    T0,
    ab_test_events,
    produce_events,
    produce_results,
    result,
)


async def test_metrics_endpoint_exposes_variants_latency_and_lag(
    settings: Settings, make_monitor: Callable[..., Monitor]
) -> None:
    events, test_id = ab_test_events(pct=20)
    await produce_events(settings, events)
    results = [
        result(
            f"m{i}",
            "challenger" if i % 5 == 0 else "champion",
            test_id,
            output=1,
            latency_ms=3.0 if i % 5 else 300.0,
            error="Timeout" if i % 10 == 0 else None,
            at=T0 + timedelta(seconds=i),
        )
        for i in range(100)
    ]
    await produce_results(settings, results)
    monitor = make_monitor()
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    server = MetricsServer(monitor, "127.0.0.1", 0)
    port = await server.start()
    try:
        await asyncio.wait_for(monitor.ready.wait(), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            resp = await http.get("/metrics")
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/plain")
            families = {f.name: f for f in text_string_to_metric_families(resp.text)}
            health = await http.get("/healthz")
            missing = await http.get("/nope")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await server.stop()
    samples = {
        (s.name, s.labels.get("variant"), s.labels.get("le"), s.labels.get("code")): s.value
        for f in families.values()
        for s in f.samples
        if s.labels.get("test_id", test_id) == test_id
    }
    assert samples[("model_registry_monitor_requests_total", "champion", None, None)] == 80
    assert samples[("model_registry_monitor_requests_total", "challenger", None, None)] == 20
    assert samples[("model_registry_monitor_errors_total", "challenger", None, None)] == 10
    assert (
        samples[("model_registry_monitor_errors_by_code_total", "challenger", None, "Timeout")]
        == 10
    )
    # Histogram: every champion result took 3 ms, every challenger one 300 ms.
    assert (
        samples[("model_registry_monitor_latency_seconds_bucket", "champion", "0.0016", None)] == 0
    )
    assert (
        samples[("model_registry_monitor_latency_seconds_bucket", "champion", "0.0032", None)] == 80
    )
    assert (
        samples[("model_registry_monitor_latency_seconds_bucket", "challenger", "0.2048", None)]
        == 0
    )
    assert (
        samples[("model_registry_monitor_latency_seconds_bucket", "challenger", "0.4096", None)]
        == 20
    )
    assert samples[("model_registry_monitor_latency_seconds_count", "challenger", None, None)] == 20
    assert (
        abs(samples[("model_registry_monitor_latency_seconds_sum", "challenger", None, None)] - 6.0)
        < 1e-9
    )
    lag = [s for s in families["model_registry_consumer_lag"].samples]
    assert lag
    assert all(s.labels["process"] == "monitor" and s.value == 0 for s in lag)
    assert {s.labels["topic"] for s in lag} == {
        settings.topic("predictions.results"),
        settings.topic("predictions.outcomes"),
        settings.topic("predictions.shadow"),
    }
    records = {
        s.labels["what"]: s.value for s in families["model_registry_monitor_records"].samples
    }
    assert records["results"] == 100
    assert health.status_code == 200
    assert health.json()["healthy"] is True
    assert health.json()["lag"] == 0
    assert missing.status_code == 404


async def test_health_turns_red_when_lagging_without_progress(
    settings: Settings, make_monitor: Callable[..., Monitor]
) -> None:
    monitor = make_monitor()
    await monitor.catch_up()
    assert monitor.healthy(stall_after_s=1.0)
    monitor.stats.lag = 5  # behind the log...
    monitor.stats.last_progress_monotonic -= 10  # ...and no batch for 10 s: stalled
    assert not monitor.healthy(stall_after_s=1.0)
