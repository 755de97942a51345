"""Registry writes end to end: command -> event -> visible in the projection.

    python bench/writes.py [--commands 20000] [--quick] [--json out.json]
                           [--bootstrap HOST:PORT] [--transactional]

Runs a real `model-registry up --only decider,projector` process on the embedded broker (or
on --bootstrap / KAFKA_BOOTSTRAP_SERVERS), then measures from a client process:
1. saturation: two client processes (like several CRM modules), 300 commands in flight
   each; commands/s until the projection shows the last one;
2. read-your-writes at a fixed 100 commands/s: time from sending a command until the
   projection has applied its event (p50/p99);
3. the baseline, in the same run: MLflow's model registry on SQLite doing the equivalent
   writes (create a registered model, then update it) through ``MlflowClient``.
Targets: >= 2,000 commands/s; p99 read-your-writes < 50 ms.

``--transactional`` runs the decider with ``REGISTRY_DECIDER_TRANSACTIONAL=1`` (Apache Kafka
only: one transaction per batch of commands, fencing a zombie decider), to measure its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_broker_option,
    broker_kind,
    machine,
    peak_rss_mb,
    percentile,
    results_path,
    use_broker,
    write_figures,
)

# The clients' fetch wait: the broker fits it (Kafka answers a waiting fetch at once when a
# record arrives; the embedded broker's is capped at 10 ms): what Settings.from_env gives.
FETCH_MAX_WAIT_MS = 500


def start_up(
    data_dir: Path, transactional: bool = False
) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    env = dict(os.environ)
    # a cluster outlives the run: this run's own topics (and decider group)
    env["REGISTRY_TOPIC_PREFIX"] = f"writes{int(time.time())}."
    if transactional:
        env["REGISTRY_DECIDER_TRANSACTIONAL"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_registry",
            "up",
            "--only",
            "decider,projector",
            "--data-dir",
            str(data_dir),
            "--status-every",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    runtime = data_dir / "runtime.json"
    deadline = time.monotonic() + 60
    while not runtime.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("`model-registry up` did not start")
        time.sleep(0.1)
    return proc, json.loads(runtime.read_text())


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def client_process(
    bootstrap: str,
    prefix: str,
    data_dir: Path,
    first: int,
    count: int,
    models: int,
    start_at: float,
) -> None:
    """One client process of the saturation run: prints its finish time and last offset."""
    from model_registry.client import ModelRegistry
    from registry.infra.settings import Settings

    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        data_dir=data_dir,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    async with ModelRegistry(settings, timeout=120) as reg:
        counter = iter(range(first, first + count))
        last = -1

        async def worker() -> None:  # a fixed pool of workers: no semaphore queue of n waiters
            nonlocal last
            for i in counter:
                result = await reg.record_metrics(f"w-{i % models}", {"accuracy": float(i % 100)})
                last = max(last, result.offset or -1)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(worker() for _ in range(300)))
        print(json.dumps({"finished_at": time.time(), "last_offset": last}), flush=True)


async def saturation(reg: object, settings: object, n: int, clients: int) -> float:
    """n commands from ``clients`` processes (like many CRM modules), until the projection
    shows them."""
    from model_registry.client import ModelRegistry
    from registry.infra.settings import Settings

    assert isinstance(reg, ModelRegistry)
    assert isinstance(settings, Settings)
    models = max(1, n // 50)
    for i in range(models):  # setup, not timed
        await reg.register(
            {
                "id": f"w-{i}",
                "name": f"w-{i}",
                "version": "1.0.0",
                "type": "classification",
                "provider": "custom",
                "status": "active",
            }
        )
    start_at = time.time() + 3.0  # every client connected and waiting by then
    per = n // clients
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            settings.bootstrap_servers,
            settings.topic_prefix,
            str(settings.data_dir),
            str(k * per),
            str(per if k < clients - 1 else n - k * per),
            str(models),
            str(start_at),
            stdout=asyncio.subprocess.PIPE,
        )
        for k in range(clients)
    ]
    outputs = [
        json.loads((await p.communicate())[0].decode().strip().splitlines()[-1]) for p in procs
    ]
    reader = await reg._projection(consistent=False)  # noqa: SLF001 - wait for the projection, as a reader would
    await reader.wait_for_offset(0, max(o["last_offset"] for o in outputs), timeout=120)
    return time.time() - start_at


async def read_your_writes(reg: object, seconds: float, rate: float) -> list[float]:
    from model_registry.client import ModelRegistry

    assert isinstance(reg, ModelRegistry)
    await reg.register(
        {
            "id": "ryw",
            "name": "ryw",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "custom",
            "status": "active",
        }
    )
    latencies: list[float] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        await reg.record_metrics("ryw", {"accuracy": float(i % 100)})
        view = await reg.get_model("ryw")
        assert view is not None
        latencies.append((time.perf_counter() - t) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(seconds * rate)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies


def mlflow_baseline(n: int) -> float | None:
    try:
        from mlflow import MlflowClient
    except ImportError:
        return None
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.create_registered_model("warmup")
        started = time.perf_counter()
        for i in range(n):
            if i % 2 == 0:
                client.create_registered_model(f"m{i}")
            else:
                client.update_registered_model(f"m{i - 1}", description=f"accuracy {i % 100}")
        return n / (time.perf_counter() - started)


async def main_async(n: int, ryw_seconds: float, out: Path, transactional: bool = False) -> None:
    from model_registry.client import ModelRegistry
    from registry.infra.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, info = start_up(data_dir, transactional)
        try:
            settings = Settings(
                bootstrap_servers=str(info["bootstrap_servers"]),
                topic_prefix=str(info.get("topic_prefix", "")),
                data_dir=data_dir,
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            )
            async with ModelRegistry(settings, timeout=60) as reg:
                seconds = await saturation(reg, settings, n, clients=2)
                latencies = await read_your_writes(reg, ryw_seconds, 100.0)
            server_rss = vm_hwm_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        import sqlite3

        with sqlite3.connect(data_dir / "projection.db") as conn:
            refused = conn.execute("SELECT COUNT(*) FROM projection_errors").fetchone()[0]
    rate = n / seconds
    baseline = mlflow_baseline(200 if n < 5000 else 1000)
    figures = {
        "commands": n,
        "commands_per_s": round(rate),
        "ryw_p50_ms": round(percentile(latencies, 50), 2),
        "ryw_p99_ms": round(percentile(latencies, 99), 2),
        "ryw_samples": len(latencies),
        "mlflow_writes_per_s": round(baseline) if baseline else None,
        "ratio_to_mlflow": round(rate / baseline, 1) if baseline else None,
        "projection_errors": refused,
        "target_commands_per_s": 2000,
        "target_ryw_p99_ms": 50,
        "server_peak_rss_mb": server_rss,
        "client_peak_rss_mb": peak_rss_mb(),
        "transactional": transactional,
        "machine": machine(),
    }
    how = f"{broker_kind()} broker" + (", transactional decider" if transactional else "")
    print(
        f"writes: {n:,} commands end to end (command -> event -> visible in the projection), {how}"
    )
    print(f"  saturation          {rate:>10,.0f} commands/s  (target >= 2,000/s)")
    print(
        f"  read-your-writes @100/s  p50 {figures['ryw_p50_ms']} ms, p99 {figures['ryw_p99_ms']} "
        "ms  (target p99 < 50 ms)"
    )
    if baseline:
        print(
            f"  MLflow registry (SQLite) {baseline:>8,.0f} writes/s  (baseline); ratio "
            f"{rate / baseline:.1f}x"
        )
    else:
        print("  MLflow baseline skipped: install the bench extra (pip install -e '.[bench]')")
    integrity = "ok, every event applied" if refused == 0 else f"{refused} EVENTS REFUSED"
    print(f"  integrity: {integrity}")
    print(f"  peak RSS: server {server_rss} MB, client {figures['client_peak_rss_mb']} MB")
    write_figures(out, figures)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        bs, prefix, data_dir, first, count, models, start_at = sys.argv[2:9]
        asyncio.run(
            client_process(
                bs, prefix, Path(data_dir), int(first), int(count), int(models), float(start_at)
            )
        )
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument(
        "--json", type=Path, help="default: bench/results/writes[.transactional][.kafka].json"
    )
    ap.add_argument(
        "--transactional",
        action="store_true",
        help="a transactional decider (Apache Kafka only), to measure what it costs",
    )
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    if args.transactional and broker_kind() == "embedded":
        ap.error("--transactional needs Apache Kafka: the embedded broker has no transactions")
    name = "writes.transactional" if args.transactional else "writes"
    out = args.json or results_path(name)
    n, ryw = (1000, 2.0) if args.quick else (args.commands, 20.0)
    asyncio.run(main_async(n, ryw, out, args.transactional))


if __name__ == "__main__":
    main()
