"""What a promotion keeps as evidence: the comparison report's verdict and figures then.

Used by ``ab promote`` (the CLI), the demo and the guard, so an auditor reads the same
figures whoever promoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.monitor.errors import TestNotFound
from consumers.monitor.report import ComparisonReport, build_report

__all__ = ["evidence_of", "running_report"]


def running_report(monitor_db: Path, challenger_id: str) -> ComparisonReport | None:
    """The report of ``challenger_id``'s running test, if the monitor has one."""
    if not monitor_db.exists():
        return None
    try:
        report = build_report(monitor_db, challenger_id)
    except TestNotFound:
        return None
    if not report.running or report.challenger_model_id != challenger_id:
        return None
    return report


def evidence_of(report: ComparisonReport, **extra: Any) -> dict[str, Any]:
    """``Evidence`` (wire form) of ``report``: its verdict and the figures behind it."""
    figures: dict[str, Any] = {
        "test_id": report.test_id,
        "champion_requests": report.champion.requests,
        "challenger_requests": report.challenger.requests,
        "champion_error_rate": report.champion.error_rate,
        "challenger_error_rate": report.challenger.error_rate,
        "champion_accuracy": report.champion.accuracy,
        "challenger_accuracy": report.challenger.accuracy,
        "champion_mae": report.champion.mae,
        "challenger_mae": report.challenger.mae,
        **extra,
    }
    quality = report.quality
    if quality is not None and quality.sequential is not None:
        figures["quality_metric"] = quality.metric
        figures["quality_diff"] = quality.sequential.estimate
        figures["quality_cs_low"] = quality.sequential.low
        figures["quality_cs_high"] = quality.sequential.high
    kept = {k: v for k, v in figures.items() if isinstance(v, int | float | str)}
    return {"verdict": report.verdict[:200], "figures": dict(list(kept.items())[:64])}
