"""End-to-end latency: a request written to the time its result is read, at steady rates.

    python bench/latency.py [--rates 200,1000,5000] [--seconds 15] [--quick]
                            [--bootstrap HOST:PORT] [--json out.json]

At each rate a client writes requests at that pace (keyed by unit id, the client producer
with the registry's default linger of 2 ms) and reads the results (its own consumer, the
configured fetch wait), measuring each request from just before its ``send()`` to the
moment its result is read. Two servers answer the same load on the same broker, one after
the other, in the same run, each in its own process:

- ``bare``: a bare aiokafka consume -> produce loop (fetch, orjson-decode, write a small
  result with ``send_batch`` per partition, linger 0, commit): what any Kafka service pays;
- ``predictor``: ``PredictionConsumer`` over a 20% A/B test of two local scikit-learn
  models (the models of ``bench/predictions.py``), with its default settings.

Target: the predictor's p50, p95 and p99 within 1.5x of the bare loop's at every rate.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
from aiokafka import TopicPartition  # noqa: E402

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    broker_kind,
    machine,
    peak_rss_mb,
    percentile,
    results_path,
    use_broker,
    write_figures,
)
from bench.predictions import _train  # noqa: E402
from consumers.predictor import PredictionConsumer  # noqa: E402
from registry.infra.kafka.clients import (  # noqa: E402
    make_consumer,
    make_producer,
    partitions_of,
    start_client,
)
from registry.infra.kafka.topics import ensure_topics  # noqa: E402
from registry.infra.settings import GrantSettings, PredictorSettings, Settings  # noqa: E402
from tests.consumers.conftest import (  # noqa: E402
    RegistryWriter,
    lead_input,
    request_bytes,
    sklearn_config,
)

TARGET_RATIO = 1.5


@dataclass
class Samples:
    """Latencies (ms) by the second their request was sent, from the start of the run."""

    sent: int = 0
    answered: int = 0
    by_second: dict[int, list[float]] = field(default_factory=dict)

    def all(self, since_s: float = 0.0) -> list[float]:
        return [v for s, vs in self.by_second.items() if s >= since_s for v in vs]

    def window(self, start_s: float, end_s: float) -> list[float]:
        return [v for s, vs in self.by_second.items() if start_s <= s < end_s for v in vs]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "p99_ms": round(percentile(values, 99), 2),
    }


async def settings_for(bootstrap_servers: str, models: dict[str, Path]) -> Settings:
    """Fresh topics (a new prefix) with the registry of the A/B test written."""
    grants = GrantSettings(model_roots=(models["champion"].parent,), allow_pickle=True)
    base = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers})
    if broker_kind() == "embedded":
        base = base.with_(fetch_max_wait_ms=Settings().fetch_max_wait_ms)
    settings = base.with_(topic_prefix=f"l{uuid.uuid4().hex[:6]}.", grants=grants)
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    writer = RegistryWriter(settings, producer)
    await writer.register(sklearn_config("lead-v1", models["champion"]))
    await writer.register(sklearn_config("lead-v2", models["challenger"]))
    await writer.start_test("lead-v2", "lead-v1", 20)
    await producer.stop()
    return settings


async def drive(  # noqa: C901 - one loop writing, one reading
    settings: Settings,
    rate: float,
    seconds: float,
    *,
    drain_s: float = 10.0,
    on_window: Callable[[Samples, float], None] | None = None,
) -> Samples:
    """Write requests at ``rate``/s for ``seconds`` and read their results; returns the
    latencies. ``on_window(samples, elapsed)`` is called every 10 s."""
    samples = Samples()
    sent_at: dict[str, tuple[float, int]] = {}
    producer = make_producer(settings)
    consumer = make_consumer(settings, enable_auto_commit=False)
    await start_client(producer, settings)
    await start_client(consumer, settings)
    results = await partitions_of(consumer, settings.topic("predictions.results"))
    consumer.assign(results)
    await consumer.seek_to_end(*results)
    done = asyncio.Event()

    async def read() -> None:
        loop_start = start
        while not done.is_set() or samples.answered < samples.sent:
            data = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in data.values():
                for r in records:
                    request_id = orjson.loads(r.value).get("request_id")
                    hit = sent_at.pop(request_id, None)
                    if hit is None:
                        continue
                    t, second = hit
                    samples.by_second.setdefault(second, []).append((now - t) * 1000)
                    samples.answered += 1
            if done.is_set() and time.perf_counter() - loop_start > seconds + drain_s:
                return

    start = time.perf_counter()
    reader = asyncio.create_task(read())
    topic = settings.topic("predictions.requests")
    prefix = uuid.uuid4().hex[:6]
    next_window = 10.0
    try:
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) + 1
            while samples.sent < due:
                i = samples.sent
                request_id = f"{prefix}-{i}"
                unit = f"lead-{i}"
                value = request_bytes(request_id, "lead-v1", lead_input(i), unit)
                sent_at[request_id] = (time.perf_counter(), int(elapsed))
                await producer.send(topic, value, key=unit.encode())
                samples.sent += 1
            if on_window is not None and elapsed >= next_window:
                on_window(samples, elapsed)
                next_window += 10.0
            await asyncio.sleep(0.002)
        await producer.flush()
        done.set()
        await reader
    finally:
        done.set()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    return samples


async def bare_loop(settings: Settings, stop: asyncio.Event, ready: asyncio.Event) -> None:
    """Consume requests, produce a small result per request (batched per partition)."""
    consumer = make_consumer(
        settings, settings.topic("predictions.requests"), group_id=f"{settings.topic_prefix}bare"
    )
    producer = make_producer(settings, linger_ms=0, max_batch_size=1024 * 1024)
    await start_client(producer, settings)
    await start_client(consumer, settings)
    out = settings.topic("predictions.results")
    ready.set()
    pending: set[asyncio.Future[Any]] = set()
    try:
        while not stop.is_set():
            data = await consumer.getmany(timeout_ms=100, max_records=4000)
            offsets: dict[TopicPartition, int] = {}
            for tp, records in data.items():
                batch = producer.create_batch()
                for r in records:
                    message = orjson.loads(r.value)
                    value = orjson.dumps(
                        {"type": "PredictionResult", "request_id": message["id"], "variant": "none"}
                    )
                    if batch.append(key=r.key, value=value, timestamp=None) is None:
                        pending.add(await producer.send_batch(batch, out, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=r.key, value=value, timestamp=None)
                pending.add(await producer.send_batch(batch, out, partition=tp.partition))
                offsets[tp] = records[-1].offset + 1
            pending = {f for f in pending if not f.done()}
            if offsets:
                asyncio.ensure_future(consumer.commit(offsets))
    finally:
        await asyncio.gather(*pending, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def predictor_loop(settings: Settings, stop: asyncio.Event, ready: asyncio.Event) -> None:
    consumer = PredictionConsumer(settings, config=PredictorSettings(assignment="all"))
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    ready.set()
    await task
    if consumer.stats.errors:
        print(f"  WARNING: {consumer.stats.errors} of the predictor's results are errors")


Server = Callable[[Settings, asyncio.Event, asyncio.Event], Awaitable[None]]
SERVERS: dict[str, Server] = {"bare": bare_loop, "predictor": predictor_loop}


def _serve_process(name: str, settings: Settings, stop: Any, ready: Any) -> None:
    """A server in its own process (as in production, and so that the client's loop and
    the server's never wait for each other)."""

    async def run() -> None:
        stopping, up = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(SERVERS[name](settings, stopping, up))
        await up.wait()
        ready.set()
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        stopping.set()
        await task

    asyncio.run(run())


async def measure(
    name: str, bootstrap_servers: str, models: dict[str, Path], rate: float, seconds: float
) -> Samples:
    settings = await settings_for(bootstrap_servers, models)
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Event()
    process = context.Process(target=_serve_process, args=(name, settings, stop, ready))
    process.start()
    try:
        while not ready.is_set():
            if not process.is_alive():
                raise RuntimeError(f"the {name} server exited with code {process.exitcode}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        return await drive(settings, rate, seconds)
    finally:
        stop.set()
        await asyncio.to_thread(process.join, 60)
        if process.is_alive():
            process.kill()


async def main_async(rates: list[int], seconds: float, out: Path) -> None:
    broker, bootstrap_servers = bootstrap()
    rows: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            models = _train(Path(tmp))
            for rate in rates:
                row: dict[str, Any] = {}
                for name in SERVERS:
                    s = await measure(name, bootstrap_servers, models, rate, seconds)
                    values = s.all(since_s=1.0)  # the first second warms the clients up
                    row[name] = {**summary(values), "sent": s.sent, "answered": s.answered}
                    print(
                        f"  {rate:>5}/s {name:<9} p50 {row[name]['p50_ms']:>7.2f} ms  "
                        f"p95 {row[name]['p95_ms']:>7.2f} ms  p99 {row[name]['p99_ms']:>7.2f} ms  "
                        f"({s.answered:,} of {s.sent:,} answered)"
                    )
                row["ratio"] = {
                    k: round(row["predictor"][f"{k}_ms"] / max(row["bare"][f"{k}_ms"], 1e-9), 2)
                    for k in ("p50", "p95", "p99")
                }
                print(
                    f"  {rate:>5}/s ratio to the bare loop: p50 {row['ratio']['p50']}, "
                    f"p95 {row['ratio']['p95']}, p99 {row['ratio']['p99']} "
                    f"(target <= {TARGET_RATIO})"
                )
                rows[str(rate)] = row
    finally:
        if broker is not None:
            broker.stop()
    worst = max(max(r["ratio"].values()) for r in rows.values())
    figures = {
        "seconds_per_rate": seconds,
        "rates": rows,
        "worst_ratio_to_bare_loop": worst,
        "target_ratio": TARGET_RATIO,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    write_figures(out, figures)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rates", default="200,1000,5000", help="requests/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds of load per rate")
    ap.add_argument("--quick", action="store_true", help="200/s for 3 s: a smoke run")
    ap.add_argument("--json", type=Path, default=None)
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    rates = [200] if args.quick else [int(r) for r in args.rates.split(",")]
    seconds = 3.0 if args.quick else args.seconds
    print(f"latency, request to result ({broker_kind()} broker), {seconds:g} s per rate")
    asyncio.run(main_async(rates, seconds, args.json or results_path("latency")))


if __name__ == "__main__":
    main()
