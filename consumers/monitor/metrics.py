"""Operations metrics: running totals and a Prometheus text endpoint on loopback.

The counters come from the monitor's ``Totals`` (``consumers.monitor.totals``): every committed
``Delta`` added up, seeded from the database at start. ``MetricsServer`` is a small asyncio
HTTP server: ``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (JSON, 503 when
the monitor has lag and has made no progress for a while). It runs on the monitor's event
loop, so it reads the totals without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from consumers.monitor.latency import PROMETHEUS_BOUNDS_MS, SUB
from consumers.monitor.service import Monitor

__all__ = ["MetricsServer", "MonitorCollector", "render_metrics"]

log = logging.getLogger(__name__)
_LABELS = ["model", "variant", "test_id"]


class MonitorCollector(Collector):
    """Builds the metric families from a monitor's totals and stats at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        yield from self._traffic()
        yield from self._latency()
        yield from self._process()

    def _traffic(self) -> Iterator[Metric]:
        t = self.monitor.totals
        names = ("requests", "errors", "fallbacks", "cache_hits")
        helps = (
            "Results seen",
            "Results with an error",
            "Results served by a fallback",
            "Results served from cache",
        )
        for i, (name, text) in enumerate(zip(names, helps, strict=True)):
            fam = CounterMetricFamily(
                f"model_registry_monitor_{name}",
                f"{text}, per model, variant and A/B test.",
                labels=_LABELS,
            )
            for labels, sums in sorted(t.traffic.items()):
                fam.add_metric(list(labels), sums[i])
            yield fam
        by_code = CounterMetricFamily(
            "model_registry_monitor_errors_by_code", "Errors by code.", labels=[*_LABELS, "code"]
        )
        for (labels, code), c in sorted(t.errors.items()):
            by_code.add_metric([*labels, code], c)
        yield by_code
        scored = CounterMetricFamily(
            "model_registry_monitor_scored_outcomes", "Outcomes joined and scored.", labels=_LABELS
        )
        correct = CounterMetricFamily(
            "model_registry_monitor_correct_outcomes",
            "Scored outcomes that matched.",
            labels=_LABELS,
        )
        for labels, (n, ok) in sorted(t.quality.items()):
            scored.add_metric(list(labels), n)
            correct.add_metric(list(labels), ok)
        yield scored
        yield correct

    def _latency(self) -> Iterator[Metric]:
        t = self.monitor.totals
        fam = HistogramMetricFamily(
            "model_registry_monitor_latency_seconds", "Prediction latency.", labels=_LABELS
        )
        for labels, counts in sorted(t.latency.items()):
            buckets: list[tuple[str, float]] = []
            for k, bound in enumerate(PROMETHEUS_BOUNDS_MS):
                last = k * SUB
                buckets.append((repr(bound / 1000), sum(c for b, c in counts.items() if b <= last)))
            buckets.append(("+Inf", sum(counts.values())))
            fam.add_metric(
                list(labels), buckets, t.traffic[labels][4] / 1000 if labels in t.traffic else 0.0
            )
        yield fam

    def _process(self) -> Iterator[Metric]:
        m = self.monitor
        lag = GaugeMetricFamily(
            "model_registry_consumer_lag",
            "Records behind the log end.",
            labels=["process", "topic", "partition"],
        )
        for (topic, partition), value in sorted(m.stats.lag_by_partition.items()):
            lag.add_metric(["monitor", topic, str(partition)], value)
        yield lag
        records = CounterMetricFamily(
            "model_registry_monitor_records", "Records handled, by what happened.", labels=["what"]
        )
        for what, value in sorted(m.stats.counts().items()):
            records.add_metric([what], value)
        yield records
        pending = GaugeMetricFamily(
            "model_registry_monitor_outcomes_pending", "Outcomes waiting for their result."
        )
        pending.add_metric([], m.stats.outcomes_pending)
        yield pending
        age = GaugeMetricFamily(
            "model_registry_monitor_seconds_since_progress",
            "Seconds since the monitor last made progress.",
        )
        age.add_metric([], time.monotonic() - m.stats.last_progress_monotonic)
        yield age


def render_metrics(monitor: Monitor) -> bytes:
    """The Prometheus text exposition of ``monitor``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(monitor))
    return generate_latest(registry)


class MetricsServer:
    """``GET /metrics`` and ``GET /healthz`` over plain HTTP/1.1, loopback by default."""

    def __init__(
        self,
        monitor: Monitor,
        host: str = "127.0.0.1",
        port: int = 9466,
        stall_after_s: float = 60.0,
    ) -> None:
        self.monitor, self.host, self.port, self.stall_after_s = monitor, host, port, stall_after_s
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("monitor metrics on http://%s:%s/metrics", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def _routes(self) -> dict[str, Callable[[], tuple[int, str, bytes]]]:
        return {"/metrics": self._metrics, "/healthz": self._health}

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(self.monitor)

    def _health(self) -> tuple[int, str, bytes]:
        healthy = self.monitor.healthy(self.stall_after_s)
        body: dict[str, Any] = {"healthy": healthy, **self.monitor.stats.snapshot()}
        return (200 if healthy else 503), "application/json", orjson.dumps(body)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            route = self._routes().get(path.split("?", 1)[0])
            if method != "GET" or route is None:
                status, ctype, body = 404, "text/plain", b"not found\n"
            else:
                status, ctype, body = route()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: "
                f"{len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ):
            pass  # a client that does not speak HTTP gets the connection closed
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
