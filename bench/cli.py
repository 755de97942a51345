"""CLI start-up: how long a command takes from exec to exit, against ``python -c pass``.

    python bench/cli.py [--runs 20] [--models 1000] [--quick] [--json out.json]

Builds a real projection first (N models' histories through the real projector, on a fresh
embedded broker or ``KAFKA_BOOTSTRAP_SERVERS``), then times, N runs each, interleaved (one
run of every command per round, so that other work on the machine weighs on all alike):
1. ``python -c pass`` (the baseline: the interpreter and site alone) and ``python -c "import
   click"`` (the floor of any click command line);
2. ``python -m model_registry --help`` and the ``model-registry`` console script's ``--help``;
3. ``models get ID`` against that projection (``REGISTRY_DATA_DIR``), both ways.
No broker is involved in what is timed. Prints p50 and min of each (wall time from spawn to
exit, and the CPU time the process used: steadier on a shared machine), the ratio of its p50
to the baseline's p50 and the milliseconds it adds to it. Targets: ``--help`` < 100 ms and
``models get`` < 150 ms on the 2-core reference machine.

The commands run as an installed CLI does, with their bytecode cached: the warm-up runs
write it under a temporary ``PYTHONPYCACHEPREFIX`` (``PYTHONDONTWRITEBYTECODE`` is dropped),
so that no run compiles the project's sources again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS,
    bootstrap,
    machine,
    peak_rss_mb,
    percentile,
    write_figures,
)
from bench.events import event_stream, produce  # noqa: E402

EVENTS_PER_MODEL = 20


async def build_projection(models: int, db: Path) -> int:
    """A projection of ``models`` models (their histories through the real projector)."""
    from projections.projector import rebuild
    from registry.infra.kafka.topics import ensure_topics
    from registry.infra.settings import Settings

    broker, bs = bootstrap()
    try:
        settings = Settings(bootstrap_servers=bs, topic_prefix=f"cli{int(time.time())}.")
        await ensure_topics(settings)
        produced = await produce(
            bs,
            settings.topic("registry.events"),
            event_stream(models * EVENTS_PER_MODEL, EVENTS_PER_MODEL),
        )
        await rebuild(settings, db)
    finally:
        if broker is not None:
            broker.stop()
    return produced


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run of ``argv`` (it must exit 0): wall ms from spawn to exit, CPU ms it used."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    ap.add_argument("--models", type=int, default=1_000)
    ap.add_argument("--quick", action="store_true", help="5 runs, 100 models: a smoke run")
    ap.add_argument("--json", type=Path, help="default: bench/results/cli.json")
    args = ap.parse_args()
    runs = 5 if args.quick else args.runs
    models = 100 if args.quick else args.models
    out = args.json or RESULTS / "cli.json"

    python = sys.executable
    script = str(Path(python).with_name("model-registry"))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        events = asyncio.run(build_projection(models, data_dir / "projection.db"))
        model_id = f"model-{models // 2:08d}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("REGISTRY_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        env["REGISTRY_DATA_DIR"] = str(data_dir)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        commands: dict[str, list[str]] = {
            "pass": [python, "-c", "pass"],
            "import_click": [python, "-c", "import click"],
            "help": [python, "-m", "model_registry", "--help"],
            "script_help": [script, "--help"],
            "get": [python, "-m", "model_registry", "models", "get", model_id],
            "script_get": [script, "models", "get", model_id],
        }
        shown = subprocess.run(
            commands["get"], env=env, capture_output=True, text=True, check=False
        )
        if shown.returncode != 0 or model_id not in shown.stdout:
            raise SystemExit(f"models get {model_id} failed: {shown.stderr[-2000:]}")
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(2):  # write the bytecode, warm the page cache
            for argv in commands.values():
                run_once(argv, env)
        for _ in range(runs):
            for name, argv in commands.items():
                wall, used = run_once(argv, env)
                times[name].append(wall)
                cpu[name].append(used)

    p50 = {name: percentile(values, 50) for name, values in times.items()}
    low = {name: min(values) for name, values in times.items()}
    cpu50 = {name: percentile(values, 50) for name, values in cpu.items()}
    base = p50["pass"]
    labels = {
        "pass": "python -c pass",
        "import_click": 'python -c "import click"',
        "help": "python -m model_registry --help",
        "script_help": "model-registry --help",
        "get": "python -m model_registry models get ID",
        "script_get": "model-registry models get ID",
    }
    targets = {"help": 100, "script_help": 100, "get": 150, "script_get": 150}
    figures: dict[str, object] = {
        "runs": runs,
        "models": models,
        "events": events,
        "broker": "none (the projection is built on a broker, the commands use none)",
        "bytecode": "cached (PYTHONPYCACHEPREFIX)",
    }
    print(
        f"cli: {runs} runs of each command, interleaved, bytecode cached; wall p50 / min, CPU "
        f"p50; ratio = wall p50 / that of `python -c pass`; projection of {models:,} models "
        f"({events:,} events)"
    )
    for name, label in labels.items():
        ratio = p50[name] / base
        figures[f"{name}_p50_ms"] = round(p50[name], 1)
        figures[f"{name}_min_ms"] = round(low[name], 1)
        figures[f"{name}_cpu_p50_ms"] = round(cpu50[name], 1)
        figures[f"{name}_ratio_to_pass"] = round(ratio, 2)
        target = f"  (target < {targets[name]} ms)" if name in targets else ""
        print(
            f"  {label:40} p50 {p50[name]:6.1f} ms  min {low[name]:6.1f} ms  "
            f"CPU {cpu50[name]:6.1f} ms  ratio {ratio:5.2f}  +{p50[name] - base:5.1f} ms{target}"
        )
    figures["target_help_ms"] = targets["help"]
    figures["target_get_ms"] = targets["get"]
    figures["peak_rss_mb"] = peak_rss_mb()
    figures["machine"] = machine()
    write_figures(out, figures)


if __name__ == "__main__":
    main()
