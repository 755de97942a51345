"""``ab report --plot``: the PNG is written and holds each variant's latency and quality."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from consumers.monitor.aggregate import OutcomeRow, ResultRow
from consumers.monitor.plot import plot_report
from consumers.monitor.report import build_report
from consumers.monitor.store import ABTestRow, Batch, ModelRow, MonitorStore, SplitRow
from model_registry.cli.monitor import report_cmd
from tests.consumers.monitor.streams import CHALLENGER, CHAMPION, T0, result

TEST = "ab:lead-scoring-v2:2"


def _fill(db: Path, minutes: int = 10) -> None:
    """Ten minutes of traffic: the challenger slower and less accurate, written through the
    store."""
    store = MonitorStore(db)
    batch = Batch()
    batch.tests[TEST] = ABTestRow(TEST, CHAMPION, CHALLENGER, 20.0, 1, "hash", T0.isoformat())
    batch.splits[(TEST, 1)] = SplitRow(TEST, 1, 20.0, T0.isoformat())
    for m in (CHAMPION, CHALLENGER):
        batch.models[m] = ModelRow(m, "classification", "1.0.0", "active")
    for i in range(minutes * 50):
        variant = "challenger" if i % 5 == 0 else "champion"
        wrong = i % (4 if variant == "challenger" else 10) == 1
        r = result(
            f"p{i}",
            variant,
            TEST,
            output=not wrong,
            latency_ms=10.0 + 20 * (variant == "challenger"),
            at=T0 + timedelta(seconds=i * 60 / 50),
        )
        batch.results.append(ResultRow.of(r))
        batch.outcomes.append(OutcomeRow(f"p{i}", f"o{i}", True))
    store.apply(batch, {CHAMPION: "classification", CHALLENGER: "classification"}, now=0.0)
    store.close()


def test_plot_has_latency_and_quality_series_per_variant(tmp_path: Path) -> None:
    db, png = tmp_path / "monitor.db", tmp_path / "out.png"
    _fill(db)
    report = build_report(db, CHAMPION, min_requests=10, min_scored=10)
    series = plot_report(db, report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert set(series) == {
        "champion p50",
        "champion p95",
        "challenger p50",
        "challenger p95",
        "champion accuracy",
        "challenger accuracy",
    }
    times, acc = series["challenger accuracy"]
    assert len(times) == 10
    assert len(acc) == 10
    assert times[0] == T0
    assert all(0.0 < a < 1.0 for a in acc)
    assert min(series["champion accuracy"][1]) > max(acc)  # the picture shows the gap
    assert max(series["champion p95"][1]) < min(series["challenger p50"][1])


def test_cli_plot_option_writes_the_png(tmp_path: Path) -> None:
    db, png = tmp_path / "monitor.db", tmp_path / "cli.png"
    _fill(db, minutes=3)
    out = CliRunner().invoke(report_cmd, [CHAMPION, "--db", str(db), "--plot", str(png), "--json"])
    assert out.exit_code == 0, out.output
    assert png.exists()
    assert png.read_bytes()[:4] == b"\x89PNG"
