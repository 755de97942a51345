"""Prediction throughput against the embedded broker (a benchmark, not a test: never collected).

    python -m tests.consumers.bench_predictions [N]

The same backlog of N requests (a 20% champion/challenger test over two local scikit-learn
models) is answered three ways, each on its own topics of one broker:

- ``bare_send``: a bare aiokafka consume -> transform -> produce loop, stdlib json and one
  ``send()`` per message (the loop DESIGN.md section 13 measured);
- ``bare_batched``: the same loop done fast (orjson, ``send_batch`` per partition);
- ``predictor``: ``PredictionConsumer`` (decode, route, cache, predict, tag, produce, commit).

Each figure is requests/s from the first batch handled to the last result acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from consumers.predictor import PredictionConsumer, PredictorConfig
from registry.kafka.broker import EmbeddedBroker
from registry.kafka.clients import make_consumer, make_producer
from registry.kafka.topics import ensure_topics
from registry.settings import Settings
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
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:6]}.")
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


async def bare_batched(settings: Settings, n: int) -> float:
    consumer = make_consumer(settings, settings.topic("predictions.requests"), group_id="bare")
    producer = make_producer(settings, linger_ms=5, max_batch_size=1024 * 1024)
    await consumer.start()
    await producer.start()
    out, done, start = settings.topic("predictions.results"), 0, 0.0
    while done < n:
        data = await consumer.getmany(timeout_ms=500, max_records=2000)
        start = start or time.perf_counter()
        futures: list[Any] = []
        for tp, records in data.items():
            batch = producer.create_batch()
            for r in records:
                message = orjson.loads(r.value)
                message["variant"] = "none"
                value = orjson.dumps(message)
                if batch.append(key=r.key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, out, partition=tp.partition))
                    batch = producer.create_batch()
                    batch.append(key=r.key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, out, partition=tp.partition))
            done += len(records)
        if futures:
            await asyncio.gather(*futures)
            await consumer.commit()
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return n / elapsed


async def predictor(settings: Settings, n: int) -> float:
    consumer = PredictionConsumer(settings, config=PredictorConfig(assignment="all"))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    start, base = 0.0, 0
    while consumer.stats.results < n:
        await asyncio.sleep(0.002)
        if not start and consumer.stats.batches:
            start, base = time.perf_counter(), consumer.stats.results  # first batch out
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return (n - base) / elapsed


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        models = _train(Path(tmp))
        for run in (bare_send, bare_batched, predictor):
            settings = await _backlog(broker.bootstrap_servers, models, n)
            rate = await run(settings, n)
            print(f"{run.__name__:>13}: {rate:>9,.0f} requests/s", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
