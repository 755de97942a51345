"""Shared bits of the benchmarks: machine description, peak memory, JSON figures, and the
broker (``--bootstrap`` or ``KAFKA_BOOTSTRAP_SERVERS``: that cluster, e.g. the Apache Kafka of
``scripts/kafka.sh``; neither: a fresh embedded broker)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": sys.version.split()[0],
        "os": platform.platform(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (children excluded), in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


RESULTS = Path(__file__).parent / "results"


def add_broker_option(ap: argparse.ArgumentParser) -> None:
    """``--bootstrap HOST:PORT[,...]``: run against that cluster (same as setting
    ``KAFKA_BOOTSTRAP_SERVERS``, which processes the benchmark starts inherit)."""
    ap.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="a running cluster (default: KAFKA_BOOTSTRAP_SERVERS, else a fresh embedded broker)",
    )


def use_broker(args: argparse.Namespace) -> None:
    """Apply ``--bootstrap`` (to this process's environment, for its children too)."""
    if getattr(args, "bootstrap", None):
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap


def broker_kind() -> str:
    """``kafka`` when a cluster is named, else ``embedded``."""
    return "kafka" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "embedded"


def results_path(name: str) -> Path:
    """Where a full run's figures go: ``results/NAME.json`` on the embedded broker,
    ``results/NAME.kafka.json`` on a named cluster (bench/report.py puts them side by side)."""
    suffix = "" if broker_kind() == "embedded" else ".kafka"
    return RESULTS / f"{name}{suffix}.json"


def write_figures(path: Path, figures: dict[str, Any]) -> None:
    figures.setdefault("broker", broker_kind())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"  figures written to {path}")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def bootstrap(quick_default: bool = False) -> tuple[Any, str]:
    """A broker for a benchmark: ``KAFKA_BOOTSTRAP_SERVERS`` or a fresh embedded one."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return None, external
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from registry.infra.kafka.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    broker.start()
    return broker, broker.bootstrap_servers
