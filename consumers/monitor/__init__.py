"""The monitor: per-variant metrics and the champion/challenger comparison (issue 6).

``Monitor`` consumes ``predictions.results``, ``predictions.outcomes`` and
``registry.events`` into SQLite (``MonitorStore``); ``build_report`` compares a test's
champion and challenger; ``plot_report`` draws it; ``MetricsServer`` serves Prometheus text.
"""

from consumers.monitor.config import MonitorConfig
from consumers.monitor.errors import MonitorError, SchemaMismatch, TestNotFound
from consumers.monitor.metrics import MetricsServer, render_metrics
from consumers.monitor.report import ComparisonReport, build_report
from consumers.monitor.service import Monitor, MonitorStats, monitor_path
from consumers.monitor.store import MonitorStore

__all__ = [
    "ComparisonReport",
    "MetricsServer",
    "Monitor",
    "MonitorConfig",
    "MonitorError",
    "MonitorStats",
    "MonitorStore",
    "SchemaMismatch",
    "TestNotFound",
    "build_report",
    "monitor_path",
    "render_metrics",
]
