"""The monitor: per-variant metrics and the champion/challenger comparison (docs/monitor.md).

``Monitor`` consumes ``predictions.results``, ``predictions.outcomes`` and
``registry.events`` into SQLite (``MonitorStore``); ``build_report`` compares a test's
champion and challenger; ``plot_report`` draws it; ``MetricsServer`` serves Prometheus text.
Its settings are ``Settings.monitor`` (``REGISTRY_MONITOR_*``).
"""

from consumers.monitor.errors import MonitorError, SchemaMismatch, TestNotFound
from consumers.monitor.metrics import MetricsServer, render_metrics
from consumers.monitor.report import ComparisonReport, build_report
from consumers.monitor.service import Monitor, MonitorStats, monitor_path
from consumers.monitor.store import MonitorStore

__all__ = [
    "ComparisonReport",
    "MetricsServer",
    "Monitor",
    "MonitorError",
    "MonitorStats",
    "MonitorStore",
    "SchemaMismatch",
    "TestNotFound",
    "build_report",
    "monitor_path",
    "render_metrics",
]
