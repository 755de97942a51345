"""Print the README's benchmark table from bench/results/*.json (the latest full runs)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict:  # type: ignore[type-arg]
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    rb, wr, rd, pr, cd = (_load(n) for n in ("rebuild", "writes", "reads", "predictions", "codec"))
    rows = []
    if rb:
        rows.append(
            (
                "projection rebuild",
                f"{rb['rebuild_per_s']:,} events/s ({rb['events']:,} events in "
                f"{rb['rebuild_seconds']} s)",
                f"bare aiokafka fetch {rb['bare_fetch_per_s']:,}/s: ratio "
                f"{rb['ratio_to_bare_fetch']}",
                ">= 100,000/s",
                rb["peak_rss_mb"],
            )
        )
    if wr:
        rows.append(
            (
                "registry writes, saturation",
                f"{wr['commands_per_s']:,} commands/s end to end",
                f"MLflow registry (SQLite) {wr['mlflow_writes_per_s']}/s: {wr['ratio_to_mlflow']}x",
                ">= 2,000/s",
                wr["server_peak_rss_mb"],
            )
        )
        rows.append(
            (
                "read-your-writes at 100 commands/s",
                f"p50 {wr['ryw_p50_ms']} ms, p99 {wr['ryw_p99_ms']} ms",
                "",
                "p99 < 50 ms",
                "",
            )
        )
    if pr:
        rows.append(
            (
                "predictions, local scikit-learn, 20% A/B",
                f"{pr['requests_per_s']:,} requests/s",
                f"bare loop {pr['bare_loop_per_s']:,}/s: ratio {pr['ratio_to_bare_loop']}; batched "
                "bare loop "
                f"{pr['bare_batched_loop_per_s']:,}/s: ratio {pr['ratio_to_bare_batched_loop']}",
                ">= 20,000/s, >= 0.5",
                pr["peak_rss_mb"],
            )
        )
    if rd:
        rows.append(
            (
                "get_model",
                f"{rd['get_model_per_s']:,}/s",
                f"bare SELECT {rd['bare_select_per_s']:,}/s: ratio {rd['get_model_ratio_to_bare']}",
                ">= 20,000/s",
                rd["peak_rss_mb"],
            )
        )
        rows.append(
            (
                f"list_models over {rd['models']:,} models",
                f"p50 {rd['list_models_narrow_p50_ms']} ms, p99 {rd['list_models_narrow_p99_ms']} "
                "ms (type+provider+status); "
                f"p99 {rd['list_models_type_status_p99_ms']} ms returning "
                f"{rd['list_models_rows']:,} rows (type+status)",
                "",
                "< 10 ms",
                "",
            )
        )
    if cd:
        rows.append(
            (
                "decode a registry event",
                f"{cd['decode_event_per_s']:,}/s",
                f"bare orjson.loads {cd['orjson_loads_per_s']:,}/s: ratio "
                f"{cd['decode_vs_bare_ratio']}",
                ">= 200,000/s (aim)",
                cd["peak_rss_mb"],
            )
        )
    print("| what | measured | baseline in the same run | target | peak RSS MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    m = (rb or wr or rd or pr or cd).get("machine", {})
    if m:
        print(
            f"\nMachine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, Python "
            f"{m.get('python')}, {m.get('os')}."
        )


if __name__ == "__main__":
    main()
