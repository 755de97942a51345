"""``ab report --plot``: each variant's latency and quality over time (matplotlib, headless).

``plot_report`` returns the series it drew (label -> (times, values)) so that a caller or a
test can check what the picture holds without reading pixels.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.monitor.latency import percentile
from consumers.monitor.report import ComparisonReport, open_readonly

__all__ = ["Series", "plot_report"]

Series = dict[str, tuple[list[datetime], list[float]]]
MAX_POINTS = 120


def _step(db: sqlite3.Connection, test_id: str) -> tuple[int, int]:
    lo, hi = db.execute(
        "SELECT MIN(minute), MAX(minute) FROM variant_minute WHERE test_id = ?", (test_id,)
    ).fetchone()
    if lo is None:
        return 0, 1
    return lo, max(
        1, -(-(hi - lo + 1) // MAX_POINTS)
    )  # minutes per point, at most MAX_POINTS points


def _series(db: sqlite3.Connection, report: ComparisonReport) -> tuple[Series, Series, str]:
    test_id = report.test_id
    start, step = _step(db, test_id)
    latency: Series = {}
    for variant in ("champion", "challenger"):
        hist: dict[int, dict[int, int]] = {}
        rows = db.execute(
            "SELECT (minute - ?) / ? AS slot, bucket, SUM(count) FROM variant_latency "
            "WHERE test_id = ? AND variant = ? GROUP BY slot, bucket ORDER BY slot",
            (start, step, test_id, variant),
        )
        for slot, bucket, count in rows:
            hist.setdefault(slot, {})[bucket] = count
        times = [_at(start + slot * step) for slot in sorted(hist)]
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            values = [percentile(hist[slot], q) for slot in sorted(hist)]
            latency[f"{variant} {name}"] = (times, [v for v in values if v is not None])
    metric = report.quality.metric if report.quality is not None else "accuracy"
    expr = (
        "SUM(abs_err_sum) / SUM(numeric_n)"
        if metric == "MAE"
        else "1.0 * SUM(correct) / SUM(scored)"
    )
    quality: Series = {}
    for variant in ("champion", "challenger"):
        qrows = db.execute(
            f"SELECT (minute - ?) / ? AS slot, {expr} FROM variant_quality WHERE test_id = ? AND "
            "variant = ? "
            "GROUP BY slot HAVING SUM(scored) > 0 ORDER BY slot",
            (start, step, test_id, variant),
        ).fetchall()
        quality[f"{variant} {metric}"] = (
            [_at(start + s * step) for s, _ in qrows],
            [float(v) for _, v in qrows],
        )
    return latency, quality, metric


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


def plot_report(db_path: Path | str, report: ComparisonReport, out: Path | str) -> Series:
    """Draw latency (p50, p95) and quality per variant over time into ``out`` (PNG).

    Returns every series drawn, keyed by its legend label.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: no display needed
    import matplotlib.pyplot as plt

    with open_readonly(db_path) as db:
        latency, quality, metric = _series(db, report)
    fig, (ax_lat, ax_q) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    try:
        colours = {"champion": "tab:blue", "challenger": "tab:orange"}
        for label, (x, y) in latency.items():
            variant, name = label.split(" ")
            ax_lat.plot(
                x,
                y,
                label=label,
                color=colours[variant],
                linestyle="-" if name == "p50" else "--",
                marker=".",  # a test of one minute is one point: still visible
            )
        ax_lat.set_ylabel("latency (ms)")
        ax_lat.set_yscale("log")
        for label, (x, y) in quality.items():
            ax_q.plot(x, y, label=label, color=colours[label.split(" ")[0]], marker=".")
        ax_q.set_ylabel(metric)
        ax_q.set_xlabel("time (UTC)")
        for ax in (ax_lat, ax_q):
            ax.legend(loc="best")
            ax.grid(True, alpha=0.3)
        fig.suptitle(
            f"{report.test_id}: {report.champion_model_id} (champion) vs "
            f"{report.challenger_model_id} (challenger)"
        )
        times = [t for x, _ in (*latency.values(), *quality.values()) for t in x]
        if times and max(times) - min(times) < timedelta(minutes=30):
            # a short test: matplotlib's date autoscale would span years around a few points
            import matplotlib.dates as mdates

            ax_q.set_xlim(min(times) - timedelta(minutes=5), max(times) + timedelta(minutes=5))
            ax_q.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
        fig.autofmt_xdate()
        # What was really drawn, read back from the axes (not from the inputs).
        drawn: Series = {
            str(line.get_label()): (list(line.get_xdata()), [float(v) for v in line.get_ydata()])
            for ax in (ax_lat, ax_q)
            for line in ax.get_lines()
        }
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return drawn
