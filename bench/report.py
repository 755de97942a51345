"""Print the README's benchmark table from bench/results/*.json (the latest full runs), the
embedded broker's figures (NAME.json) beside Apache Kafka's (NAME.kafka.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

Figures = dict[str, Any]
Cell = tuple[str, str, Any]  # measured, baseline in the same run, peak RSS MB


def _load(name: str) -> Figures:
    path = RESULTS / f"{name}.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _rebuild(f: Figures) -> Cell:
    swap = f.get("swap_into_live_seconds")
    swapped = f", swapped into a live projection in {swap} s" if swap is not None else ""
    return (
        f"{f['rebuild_per_s']:,} events/s ({f['events']:,} events in {f['rebuild_seconds']} s"
        f"{swapped})",
        f"bare aiokafka fetch {f['bare_fetch_per_s']:,}/s: ratio {f['ratio_to_bare_fetch']}",
        f["peak_rss_mb"],
    )


def _writes(f: Figures) -> Cell:
    return (
        f"{f['commands_per_s']:,} commands/s end to end ({f['commands']:,} commands)",
        f"MLflow registry (SQLite) {f['mlflow_writes_per_s']}/s: {f['ratio_to_mlflow']}x",
        f["server_peak_rss_mb"],
    )


def _in_flight(level: str) -> Callable[[Figures], Cell]:
    def cell(f: Figures) -> Cell:
        g = f["in_flight"][level]
        return (
            f"{g['commands_per_s']:,} commands/s ({g['commands']:,} commands)",
            f"MLflow (SQLite), {level} thread(s), {g['mlflow_writes_per_s']}/s: "
            f"{g['ratio_to_mlflow']}x",
            "",
        )

    return cell


def _one_command(f: Figures) -> Cell:
    return (
        f"accepted reply p50 {f['reply_p50_ms']} ms, p99 {f['reply_p99_ms']} ms; visible in "
        f"the projection p50 {f['visible_p50_ms']} ms, p99 {f['visible_p99_ms']} ms",
        f"MLflow one call p50 {f['mlflow_call_p50_ms']} ms, p99 {f['mlflow_call_p99_ms']} ms",
        "",
    )


def _ryw(f: Figures) -> Cell:
    return f"p50 {f['ryw_p50_ms']} ms, p99 {f['ryw_p99_ms']} ms", "", ""


def _predictions(f: Figures) -> Cell:
    return (
        f"{f['requests_per_s']:,} requests/s ({f['requests']:,} requests)",
        f"bare loop {f['bare_loop_per_s']:,}/s: ratio {f['ratio_to_bare_loop']}; batched bare "
        f"loop {f['bare_batched_loop_per_s']:,}/s: ratio {f['ratio_to_bare_batched_loop']}",
        f["peak_rss_mb"],
    )


def _get_model(f: Figures) -> Cell:
    return (
        f"{f['get_model_per_s']:,}/s (with `.config` read)",
        f"bare SELECT {f['bare_select_per_s']:,}/s: ratio {f['get_model_ratio_to_bare']}",
        f["peak_rss_mb"],
    )


def _list_models(f: Figures) -> Cell:
    return (
        f"page of 100 over {f['models']:,} models: p50 {f['list_models_page_100_p50_ms']} ms, "
        f"p99 {f['list_models_page_100_p99_ms']} ms (views, configs read); 5 columns p50 "
        f"{f['list_models_page_columns_p50_ms']} ms, p99 {f['list_models_page_columns_p99_ms']} ms",
        f"bare SELECT of the page p50 {f['bare_select_page_p50_ms']} ms, p99 "
        f"{f['bare_select_page_p99_ms']} ms",
        "",
    )


def _codec(f: Figures) -> Cell:
    return (
        f"{f['decode_event_per_s']:,}/s",
        f"bare orjson.loads {f['orjson_loads_per_s']:,}/s: ratio {f['decode_vs_bare_ratio']}",
        f["peak_rss_mb"],
    )


def _cli(f: Figures) -> Cell:
    return (
        f"`--help` p50 {f['script_help_p50_ms']} ms (min {f['script_help_min_ms']}), `models get` "
        f"p50 {f['script_get_p50_ms']} ms (min {f['script_get_min_ms']}), console script, "
        f"bytecode cached",
        f"`python -c pass` p50 {f['pass_p50_ms']} ms: ratio {f['script_help_ratio_to_pass']} "
        f"(`--help`), {f['script_get_ratio_to_pass']} (`models get`)",
        "",
    )


def _latency(rate: str) -> Callable[[Figures], Cell]:
    def cell(f: Figures) -> Cell:
        r = f["rates"][rate]
        p, b, x = r["predictor"], r["bare"], r["ratio"]
        return (
            f"p50 {p['p50_ms']} / p95 {p['p95_ms']} / p99 {p['p99_ms']} ms",
            f"bare consume-produce loop p50 {b['p50_ms']} / p95 {b['p95_ms']} / p99 "
            f"{b['p99_ms']} ms: ratios {x['p50']} / {x['p95']} / {x['p99']}",
            "",
        )

    return cell


def _ms(value: Any) -> str:
    return "no answers" if value is None or value != value else f"{value:,} ms"  # NaN


def _soak(f: Figures) -> Cell:
    windows = f["windows"]
    first, last = windows[0], windows[-1]
    minutes = round(f["seconds"] / 60)
    return (
        f"{f['rate']:,}/s for {minutes} min: p99 {_ms(first['p99_ms'])} in the first minute, "
        f"{_ms(last['p99_ms'])} in the last; {f['answered']:,} of {f['sent']:,} answered",
        f"right after, 30 s at the same rate: this stack p99 {_ms(f['aged']['p99_ms'])}, a "
        f"fresh one {_ms(f['fresh']['p99_ms'])}",
        f["peak_rss_mb"],
    )


ROWS: list[tuple[str, str, Callable[[Figures], Cell], str]] = [
    ("projection rebuild", "rebuild", _rebuild, ">= 100,000/s"),
    ("registry writes, 1 in flight", "writes", _in_flight("1"), ">= MLflow (on Kafka)"),
    ("registry writes, 8 in flight", "writes", _in_flight("8"), ""),
    ("registry writes, 600 in flight (2 processes)", "writes", _writes, ">= 2,000/s"),
    ("one command at a time", "writes", _one_command, ""),
    ("read-your-writes at 100 commands/s", "writes", _ryw, "p99 < 50 ms"),
    ("registry writes, transactional decider", "writes.transactional", _writes, ""),
    ("read-your-writes, transactional decider", "writes.transactional", _ryw, ""),
    (
        "predictions, local scikit-learn, 20% A/B",
        "predictions",
        _predictions,
        ">= 20,000/s, >= 0.5",
    ),
    ("request to result at 200/s", "latency", _latency("200"), "<= 1.5x the bare loop"),
    ("request to result at 1,000/s", "latency", _latency("1000"), "<= 1.5x the bare loop"),
    ("request to result at 5,000/s", "latency", _latency("5000"), "<= 1.5x the bare loop"),
    ("sustained load (soak)", "soak", _soak, "p99 flat; aged = fresh"),
    ("get_model", "reads", _get_model, ">= 20,000/s"),
    ("list_models", "reads", _list_models, "p99 < 10 ms"),
    ("decode a registry event (no broker)", "codec", _codec, ">= 200,000/s (aim)"),
    ("CLI start-up (no broker)", "cli", _cli, "`--help` < 100 ms, `models get` < 150 ms"),
]


def _both(a: Any, b: Any) -> str:
    a, b = ("" if a in (None, "") else str(a)), ("" if b in (None, "") else str(b))
    if a and b:
        return f"{a} / {b}"
    return a or (f"— / {b}" if b else "")


def main() -> None:
    print(
        "| what | embedded broker (Tansu) | Apache Kafka 4.4 (scripts/kafka.sh, 1 node) "
        "| baseline in the same run (embedded / Kafka) | target | peak RSS MB (embedded / Kafka) |"
    )
    print("|---|---|---|---|---|---|")
    machines: list[Figures] = []
    for what, name, cell, target in ROWS:
        embedded, kafka = _load(name), _load(f"{name}.kafka")
        if not embedded and not kafka:
            continue
        e = cell(embedded) if embedded else ("—", "", "")
        k = cell(kafka) if kafka else ("—", "", "")
        if name in ("codec", "cli"):  # no broker: one figure
            k = ("(same code, no broker)", "", "")
        machines += [f["machine"] for f in (embedded, kafka) if f.get("machine")]
        print(
            f"| {what} | {e[0]} | {k[0]} | {_both(e[1], k[1])} | {target} | {_both(e[2], k[2])} |"
        )
    if machines:
        m = machines[0]
        print(
            f"\nMachine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, Python "
            f"{m.get('python')}, {m.get('os')}."
        )


if __name__ == "__main__":
    main()
