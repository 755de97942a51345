"""Registry writes end to end (command -> event -> visible in the projection), against MLflow.

    python bench/writes.py [--commands 20000] [--quick] [--json out.json]
                           [--bootstrap HOST:PORT] [--transactional]

Runs a real `model-registry up --only decider,projector` process on the embedded broker (or
on --bootstrap / KAFKA_BOOTSTRAP_SERVERS), then measures, in the same run:
1. throughput at 1, 8 and 600 commands in flight: client processes (one at 1 and 8 in
   flight, two of 300 each at 600, like several CRM modules) send ``RecordMetrics``
   commands through ``ModelRegistry``, each worker one command at a time; commands/s from
   the start until the projection shows the last one;
2. right after each (the same minutes: other load on the machine weighs on both alike), the
   baseline: MLflow's model registry on SQLite through ``MlflowClient`` (mlflow-skinny)
   doing the equivalent writes (create a registered model, then update it), with as many
   threads as commands in flight: its client is synchronous, so one thread is one call in
   flight. One process: SQLite lets one writer in at a time and MLflow spends
   each call in that lock and its fsync, so two processes are no faster (measured: 1x1
   37.7/s, 2x4 32.4/s, 2x300 32.6/s with "database is locked" failures), while threads in
   one process never failed;
3. single-command latency, one in flight: send -> accepted reply (``WriteResult`` back:
   the event is appended and acknowledged), and send -> visible in the projection (the
   reply, then ``get_model`` waiting for the projection to apply it: read-your-writes);
4. read-your-writes at a fixed 100 commands/s (p50/p99), as before.
Targets: >= 2,000 commands/s at 600 in flight; one in flight at least MLflow's one call at a
time; p99 read-your-writes < 50 ms.

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


IN_FLIGHT = (1, 8, 600)


def client_layout(in_flight: int) -> tuple[int, int]:
    """(processes, workers each) for ``in_flight`` commands in flight."""
    return (2, in_flight // 2) if in_flight >= 100 else (1, in_flight)


async def client_process(
    bootstrap: str,
    prefix: str,
    data_dir: Path,
    first: int,
    count: int,
    models: int,
    start_at: float,
    workers: int,
) -> None:
    """One client process of a throughput run: prints its finish time and last offset."""
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
        await asyncio.gather(*(worker() for _ in range(workers)))
        print(json.dumps({"finished_at": time.time(), "last_offset": last}), flush=True)


async def register_models(reg: object, models: int) -> None:
    from model_registry.client import ModelRegistry

    assert isinstance(reg, ModelRegistry)
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


async def registry_rate(
    reg: object, settings: object, n: int, in_flight: int, models: int, first: int
) -> float:
    """n commands with ``in_flight`` in flight, from client processes, until the projection
    shows them; commands/s."""
    from model_registry.client import ModelRegistry
    from registry.infra.settings import Settings

    assert isinstance(reg, ModelRegistry)
    assert isinstance(settings, Settings)
    clients, workers = client_layout(in_flight)
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
            str(first + k * per),
            str(per if k < clients - 1 else n - k * per),
            str(models),
            str(start_at),
            str(workers),
            stdout=asyncio.subprocess.PIPE,
        )
        for k in range(clients)
    ]
    outputs = [
        json.loads((await p.communicate())[0].decode().strip().splitlines()[-1]) for p in procs
    ]
    reader = await reg._projection(consistent=False)  # noqa: SLF001 - wait for the projection, as a reader would
    await reader.wait_for_offset(0, max(o["last_offset"] for o in outputs), timeout=120)
    return n / (time.time() - start_at)


async def single_latency(reg: object, samples: int) -> tuple[list[float], list[float]]:
    """One command in flight, ``samples`` times: (send -> accepted reply, send -> visible in
    the projection), in ms."""
    from model_registry.client import ModelRegistry

    assert isinstance(reg, ModelRegistry)
    replied: list[float] = []
    visible: list[float] = []
    for i in range(samples):
        t = time.perf_counter()
        await reg.record_metrics("w-0", {"accuracy": float(i % 100)})
        replied.append((time.perf_counter() - t) * 1000)
        view = await reg.get_model("w-0")  # waits for the projection to apply this write
        visible.append((time.perf_counter() - t) * 1000)
        assert view is not None
    return replied, visible


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


def mlflow_rate(n: int, in_flight: int) -> tuple[float, int, list[float]] | None:
    """MLflow's registry on SQLite with ``in_flight`` calls in flight (threads of one
    process): (writes/s, failed calls, each call's ms); None without mlflow installed."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        return None
    import logging
    from concurrent.futures import ThreadPoolExecutor

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.create_registered_model("warmup")
        failed = 0
        calls: list[float] = []

        def pair(j: int) -> None:
            """Two writes, as a worker would: create a model, then update it."""
            nonlocal failed
            try:
                t = time.perf_counter()
                client.create_registered_model(f"m{j}")
                t1 = time.perf_counter()
                client.update_registered_model(f"m{j}", description=f"accuracy {j % 100}")
                calls.extend([(t1 - t) * 1000, (time.perf_counter() - t1) * 1000])
            except Exception:  # noqa: BLE001 - counted: SQLite's lock can time out
                failed += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(pair, range(n // 2)))
        return n / (time.perf_counter() - started), failed, calls


async def main_async(
    sizes: dict[int, int],
    latency_samples: int,
    ryw_seconds: float,
    mlflow_n: int,
    out: Path,
    transactional: bool = False,
) -> None:
    from model_registry.client import ModelRegistry
    from registry.infra.settings import Settings

    rates: dict[int, float] = {}
    baseline: dict[int, tuple[float, int, list[float]] | None] = {}
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
                models = max(1, max(sizes.values()) // 50)
                await register_models(reg, models)
                first = 0
                for in_flight, n in sizes.items():
                    rates[in_flight] = await registry_rate(
                        reg, settings, n, in_flight, models, first
                    )
                    first += n
                    # right after, in the same minutes (the registry idle meanwhile): the
                    # machine's other load weighs on both alike
                    baseline[in_flight] = await asyncio.to_thread(mlflow_rate, mlflow_n, in_flight)
                replied, visible = await single_latency(reg, latency_samples)
                latencies = await read_your_writes(reg, ryw_seconds, 100.0)
            server_rss = vm_hwm_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        import sqlite3

        with sqlite3.connect(data_dir / "projection.db") as conn:
            refused = conn.execute("SELECT COUNT(*) FROM projection_errors").fetchone()[0]
    levels: dict[str, dict[str, object]] = {}
    for in_flight, n in sizes.items():
        ml = baseline[in_flight]
        levels[str(in_flight)] = {
            "commands": n,
            "client_processes": client_layout(in_flight)[0],
            "commands_per_s": round(rates[in_flight], 1),
            "mlflow_writes_per_s": round(ml[0], 1) if ml else None,
            "mlflow_failed_calls": ml[1] if ml else None,
            "ratio_to_mlflow": round(rates[in_flight] / ml[0], 2) if ml else None,
        }
    top = levels[str(max(sizes))]
    one = baseline.get(1)
    ml_calls = one[2] if one else []
    figures = {
        "commands": max(sizes.values()),
        "commands_per_s": round(rates[max(sizes)]),
        "mlflow_writes_per_s": top["mlflow_writes_per_s"],
        "ratio_to_mlflow": top["ratio_to_mlflow"],
        "in_flight": levels,
        "mlflow_concurrency": "threads in one process, one call in flight per thread",
        "latency_samples": latency_samples,
        "reply_p50_ms": round(percentile(replied, 50), 2),
        "reply_p99_ms": round(percentile(replied, 99), 2),
        "visible_p50_ms": round(percentile(visible, 50), 2),
        "visible_p99_ms": round(percentile(visible, 99), 2),
        "mlflow_call_p50_ms": round(percentile(ml_calls, 50), 2) if ml_calls else None,
        "mlflow_call_p99_ms": round(percentile(ml_calls, 99), 2) if ml_calls else None,
        "ryw_p50_ms": round(percentile(latencies, 50), 2),
        "ryw_p99_ms": round(percentile(latencies, 99), 2),
        "ryw_samples": len(latencies),
        "projection_errors": refused,
        "target_commands_per_s": 2000,
        "target_ryw_p99_ms": 50,
        "server_peak_rss_mb": server_rss,
        "client_peak_rss_mb": peak_rss_mb(),
        "transactional": transactional,
        "machine": machine(),
    }
    how = f"{broker_kind()} broker" + (", transactional decider" if transactional else "")
    print(f"writes, end to end (command -> event -> visible in the projection), {how}")
    print("  in flight   registry commands/s   MLflow (SQLite) writes/s   ratio")
    for in_flight, level in levels.items():
        ml_rate = level["mlflow_writes_per_s"]
        ml = f"{ml_rate:>10,.1f}" if isinstance(ml_rate, float) else "   skipped"
        failed = level["mlflow_failed_calls"]
        note = f"  ({failed} MLflow calls failed)" if failed else ""
        print(
            f"  {in_flight:>9}   {level['commands_per_s']:>19,.1f}   {ml:>24}   "
            f"{level['ratio_to_mlflow']}x{note}"
        )
    print(
        f"  one command in flight, {latency_samples} samples: send -> accepted reply p50 "
        f"{figures['reply_p50_ms']} ms, p99 {figures['reply_p99_ms']} ms; send -> visible in "
        f"the projection p50 {figures['visible_p50_ms']} ms, p99 {figures['visible_p99_ms']} ms"
    )
    if ml_calls:
        print(
            f"  MLflow, one call at a time: p50 {figures['mlflow_call_p50_ms']} ms, "
            f"p99 {figures['mlflow_call_p99_ms']} ms (a call returns once its write is committed)"
        )
    print(
        f"  read-your-writes @100/s  p50 {figures['ryw_p50_ms']} ms, p99 {figures['ryw_p99_ms']} "
        "ms  (target p99 < 50 ms)"
    )
    if any(b is None for b in baseline.values()):
        print("  MLflow baseline skipped: install the bench extra (pip install -e '.[bench]')")
    integrity = "ok, every event applied" if refused == 0 else f"{refused} EVENTS REFUSED"
    print(f"  integrity: {integrity}")
    print(f"  peak RSS: server {server_rss} MB, client {figures['client_peak_rss_mb']} MB")
    write_figures(out, figures)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        bs, prefix, data_dir, first, count, models, start_at, workers = sys.argv[2:10]
        asyncio.run(
            client_process(
                bs,
                prefix,
                Path(data_dir),
                int(first),
                int(count),
                int(models),
                float(start_at),
                int(workers),
            )
        )
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--commands", type=int, default=20_000, help="commands at 600 in flight (default 20,000)"
    )
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
    if args.quick:
        sizes, samples, ryw, mlflow_n = {1: 100, 8: 300, 600: 1000}, 100, 2.0, 100
    else:
        sizes = {1: 1000, 8: 4000, 600: args.commands}
        samples, ryw, mlflow_n = 1000, 20.0, 1000
    asyncio.run(main_async(sizes, samples, ryw, mlflow_n, out, args.transactional))


if __name__ == "__main__":
    main()
