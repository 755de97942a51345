"""Each benchmark runs in its --quick form so the scripts cannot rot; figures are printed and
written as JSON. No speed is asserted here: speed lives in bench/ (docs/design.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        ("codec.py", ["decode_event_per_s", "decode_vs_bare_ratio"]),
        ("cli.py", ["script_help_p50_ms", "script_get_p50_ms", "pass_p50_ms"]),
        ("rebuild.py", ["rebuild_per_s", "bare_fetch_per_s", "ratio_to_bare_fetch"]),
        ("writes.py", ["commands_per_s", "ryw_p99_ms", "mlflow_writes_per_s", "ratio_to_mlflow"]),
        ("reads.py", ["get_model_per_s", "bare_select_per_s", "list_models_page_100_p99_ms"]),
        ("predictions.py", ["requests_per_s", "bare_loop_per_s", "ratio_to_bare_loop"]),
        ("api.py", ["api_get_model_per_s", "bare_get_model_per_s", "ratio_to_bare", "api_p99_ms"]),
        ("latency.py", ["rates", "worst_ratio_to_bare_loop"]),
        ("soak.py", ["windows", "aged", "fresh", "aged_to_fresh_p99", "p99_growth_last_to_first"]),
    ],
)
def test_bench_quick(script: str, keys: list[str], tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ratio" in run.stdout
    figures = json.loads(out.read_text())
    for key in keys:
        assert figures.get(key) is not None, f"{script} did not report {key}"
    assert figures["machine"]["cores"] >= 1
    assert any(k.startswith("peak_rss") or k.endswith("peak_rss_mb") for k in figures)


def test_report_prints_a_row_for_every_committed_result() -> None:
    """bench/report.py turns the committed figures into the README's table: every row whose
    results are committed appears, with both brokers where both were measured."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")][1:]
    names = {line.split(" | ")[0].removeprefix("| ") for line in rows}
    for expected in (
        "projection rebuild",
        "registry writes, 1 in flight",
        "one command at a time",
        "request to result at 5,000/s",
        "sustained load (soak)",
        "get_model",
        "list_models",
        "CLI start-up (no broker)",
    ):
        assert expected in names, f"no {expected!r} row in:\n{run.stdout}"
    latency = next(line for line in rows if line.startswith("| request to result at 200/s"))
    assert latency.count("ratios") == 2  # the embedded broker's and Apache Kafka's
