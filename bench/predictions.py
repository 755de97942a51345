"""Prediction throughput: the prediction consumer against bare loops over the same messages.

    python bench/predictions.py [--requests 100000] [--quick] [--bootstrap HOST:PORT]
                                [--json out.json]

The same backlog of N requests (a 20% champion/challenger test over two local scikit-learn
models) is answered three ways, each on its own topics of one broker:

- ``bare_send``: a bare aiokafka consume -> transform -> produce loop, stdlib json and one
  ``send()`` per message (the loop the first design measured);
- ``bare_batched``: the predictor's I/O without the registry, the baseline of the target:
  batches of ``max_batch`` (4000) records, up to ``max_in_flight`` (2) fetched batches
  awaiting their acks while the next is handled, orjson, results of the same fields and size
  written with ``send_batch`` per partition, linger 0, commits after the acks;
- ``predictor``: ``PredictionConsumer`` (decode, route, cache, predict, tag, produce, commit).

Each figure is requests/s from the first batch handled to the last result acknowledged.
Targets: >= 20,000 requests/s, and >= 0.5 of the batched loop (issue 18).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    machine,
    peak_rss_mb,
    results_path,
    use_broker,
    write_figures,
)
from consumers.predictor import PredictionConsumer
from registry.infra.kafka.clients import make_consumer, make_producer
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import GrantSettings, PredictorSettings, Settings
from tests.consumers.conftest import (
    RegistryWriter,
    _lead_data,
    lead_input,
    request_bytes,
    sklearn_config,
)


def _train(folder: Path) -> dict[str, Path]:
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = _lead_data(2000, seed=7)
    paths = {"champion": folder / "lr.joblib", "challenger": folder / "rf.joblib"}
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), paths["champion"])
    rf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=1)
    joblib.dump(rf.fit(x, y), paths["challenger"])
    return paths


async def _backlog(bootstrap: str, models: dict[str, Path], n: int) -> Settings:
    # The operator grants the folder of the two model files (joblib: pickles allowed).
    grants = GrantSettings(model_roots=(models["champion"].parent,), allow_pickle=True)
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:6]}.", grants=grants
    )
    await ensure_topics(settings)
    producer = make_producer(settings, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    writer = RegistryWriter(settings, producer)
    await writer.register(sklearn_config("lead-v1", models["champion"]))
    await writer.register(sklearn_config("lead-v2", models["challenger"]))
    await writer.start_test("lead-v2", "lead-v1", 20)
    topic = settings.topic("predictions.requests")
    futures = []
    for i in range(n):
        unit = f"lead-{i}"
        value = request_bytes(f"r{i}", "lead-v1", lead_input(i), unit)
        futures.append(await producer.send(topic, value, key=unit.encode()))
    await asyncio.gather(*futures)
    await producer.stop()
    return settings


async def bare_send(settings: Settings, n: int) -> float:
    consumer = make_consumer(settings, settings.topic("predictions.requests"), group_id="bare")
    producer = make_producer(settings, linger_ms=5)
    await consumer.start()
    await producer.start()
    out, done, start = settings.topic("predictions.results"), 0, 0.0
    while done < n:
        data = await consumer.getmany(timeout_ms=500, max_records=2000)
        start = start or time.perf_counter()
        futures = []
        for records in data.values():
            for r in records:
                message = json.loads(r.value)
                message["variant"] = "none"
                futures.append(await producer.send(out, json.dumps(message).encode(), key=r.key))
        if futures:
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return n / elapsed


# The shape of a real result of this bench (a challenger's answer with probabilities): the
# batched loop writes messages of the same fields and size as the predictor's.
_RESULT_TEMPLATE: dict[str, Any] = {
    "type": "PredictionResult",
    "schema_version": 1,
    "occurred_at": "2026-12-02T18:04:05.123456Z",
    "requested_model_id": "lead-v1",
    "variant": "challenger",
    "resolved_model_id": "lead-v1",
    "served_model_id": "lead-v2",
    "served_version": "1.0.0",
    "provider": "scikit-learn",
    "test_id": "ab:lead-v2:3",
    "split_version": 1,
    "latency_ms": 1.234,
    "cached": False,
    "output": {"label": 1, "score": 0.8312, "probabilities": {"0": 0.1688, "1": 0.8312}},
}
MAX_BATCH, IN_FLIGHT = PredictorSettings().max_batch, PredictorSettings().max_in_flight


async def bare_batched(settings: Settings, n: int) -> float:
    """The predictor's I/O without the registry: fetch up to ``MAX_BATCH`` records, orjson-
    decode each, write a result of the same fields and size (its ids from the request, the
    rest a constant), one ``send_batch`` per partition, linger 0; up to ``IN_FLIGHT``
    fetched batches await their acks while the next is handled, and each batch's offsets
    are committed once its results are acknowledged. No routing, cache, dedupe, model."""
    consumer = make_consumer(settings, settings.topic("predictions.requests"), group_id="bare")
    producer = make_producer(settings, linger_ms=0, max_batch_size=1024 * 1024)
    await consumer.start()
    await producer.start()
    out, done, start = settings.topic("predictions.results"), 0, 0.0
    template = _RESULT_TEMPLATE
    waiting: list[tuple[asyncio.Future[Any], dict[Any, int], int]] = []

    async def settle() -> int:
        acks, offsets, count = waiting.pop(0)
        await acks
        await consumer.commit(offsets)
        return count

    while done < n:
        if len(waiting) >= IN_FLIGHT:
            done += await settle()
            continue
        data = await consumer.getmany(timeout_ms=100, max_records=MAX_BATCH)
        if not data:
            if waiting:
                done += await settle()
            continue
        start = start or time.perf_counter()
        futures: list[Any] = []
        offsets: dict[Any, int] = {}
        count = 0
        for tp, records in data.items():
            batch = producer.create_batch()
            for r in records:
                message = orjson.loads(r.value)
                result = template.copy()
                request_id = message["id"]
                result["id"] = f"{request_id:0>36}"  # a result id is a 36-character UUID
                result["request_id"] = request_id
                result["unit_id"] = message["unit_id"]
                value = orjson.dumps(result)
                if batch.append(key=r.key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, out, partition=tp.partition))
                    batch = producer.create_batch()
                    batch.append(key=r.key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, out, partition=tp.partition))
            offsets[tp] = records[-1].offset + 1
            count += len(records)
        waiting.append((asyncio.ensure_future(asyncio.gather(*futures)), offsets, count))
    while waiting:
        done += await settle()
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return n / elapsed


async def predictor(settings: Settings, n: int) -> float:
    consumer = PredictionConsumer(settings, config=PredictorSettings(assignment="all"))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    # From the first batch read, as the bare loops (their clock starts at their first
    # non-empty fetch), to the last result acknowledged.
    while consumer.stats.records == 0:
        await asyncio.sleep(0.001)
    start = time.perf_counter()
    while consumer.stats.results < n:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    if consumer.stats.errors:  # a figure of error results would measure nothing
        print(f"  WARNING: {consumer.stats.errors} of the predictor's results are errors")
    return n / elapsed


async def main_async(n: int, out: Path, rounds: int = 2) -> None:
    broker, bootstrap_servers = bootstrap()
    rates: dict[str, float] = {}
    runs: dict[str, list[int]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            models = _train(Path(tmp))
            # The batched loop and the predictor alternate (the best of each counts): the
            # shared machine's speed drifts during a run.
            for run in (bare_send, *(bare_batched, predictor) * rounds):
                settings = await _backlog(bootstrap_servers, models, n)
                rate = await run(settings, n)
                runs.setdefault(run.__name__, []).append(round(rate))
                rates[run.__name__] = max(rate, rates.get(run.__name__, 0.0))
    finally:
        if broker is not None:
            broker.stop()
    p, design, fast = rates["predictor"], rates["bare_send"], rates["bare_batched"]
    # each predictor run against the batched loop run just before it (the machine drifts)
    pairs = sorted(q / b for b, q in zip(runs["bare_batched"], runs["predictor"], strict=True) if b)
    paired = statistics.median(pairs)
    figures = {
        "requests": n,
        "requests_per_s": round(p),
        "bare_loop_per_s": round(design),
        "bare_batched_loop_per_s": round(fast),
        "ratio_to_bare_loop": round(p / design, 3),
        "ratio_to_bare_batched_loop": round(p / fast, 3),
        "paired_ratios_to_bare_batched_loop": [round(r, 3) for r in pairs],
        "median_paired_ratio": round(paired, 3),
        "runs_per_s": runs,
        "target_requests_per_s": 20000,
        "target_ratio": 0.5,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    print(f"predictions: {n:,} requests, 20% A/B test over two local scikit-learn models")
    print(
        f"  bare loop (stdlib json, send per message)   {design:>9,.0f}/s  "
        "(baseline, as the first design measured)"
    )
    print(
        f"  bare loop (the predictor's I/O, batched)    {fast:>9,.0f}/s  (the target's baseline; "
        f"runs {runs['bare_batched']})"
    )
    print(
        f"  prediction consumer                         {p:>9,.0f}/s  ratio {p / fast:.2f} to the "
        f"batched loop (target >= 0.5), {p / design:.2f} to the stdlib one; "
        f"runs {runs['predictor']}"
    )
    print(
        "  ratio of each predictor run to the batched run just before it: "
        f"{figures['paired_ratios_to_bare_batched_loop']} (median {figures['median_paired_ratio']})"
    )
    print(f"  peak RSS {figures['peak_rss_mb']} MB")
    write_figures(out, figures)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="5,000 requests: a smoke run")
    ap.add_argument("--rounds", type=int, default=3, help="batched loop / predictor pairs")
    ap.add_argument("--json", type=Path, default=None)
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    out = args.json or results_path("predictions")
    rounds = 1 if args.quick else args.rounds
    asyncio.run(main_async(5_000 if args.quick else args.requests, out, rounds))


if __name__ == "__main__":
    main()
