"""Fuzz ``registry.events`` for its readers: mutated records written by a stray writer
between honest events. The decider's rebuild and the projector read past every one of them,
believe none, account for each, and go on with the honest events after them."""

from __future__ import annotations

import sqlite3

import orjson
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from projections import Projector
from projections.schema import projection_path
from registry.core.types import Metrics, Status
from registry.infra.settings import Settings
from tests.helpers import model_config, read_topic, running_decider
from tests.mutations import mutations

N = 1500


async def test_mutated_events_are_never_believed_and_never_stop_a_reader(
    settings: Settings,
) -> None:
    async with running_decider(settings), ModelRegistry(settings) as reg:
        await reg.register(model_config("a"))
        await reg.update_status("a", Status.TESTING)
        await reg.record_metrics("a", Metrics(accuracy=90))
        await reg.register(model_config("b"))
    honest = [orjson.loads(r.value) for r in await read_topic(settings, "registry.events")]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        for m in mutations(honest, 2718, N, id_prefix="ev-", large_bytes=200_000):
            await producer.send(settings.topic("registry.events"), m.value, key=b"a")
        await producer.flush()
    finally:
        await producer.stop()
    # the decider rebuilds through the fuzz and continues the chain from the last honest event
    async with running_decider(settings) as decider, ModelRegistry(settings) as reg:
        assert decider.stats.skipped_events == N
        await reg.update_status("a", Status.ACTIVE)
        await reg.record_metrics("b", Metrics(accuracy=70))
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    total = len(honest) + N + 2
    with sqlite3.connect(db) as conn:
        believed = {o for (o,) in conn.execute("SELECT offset FROM events WHERE applied = 1")}
        kept = {o for (o,) in conn.execute("SELECT offset FROM events")}
        refused = dict(conn.execute("SELECT offset, kind FROM projection_errors").fetchall())
        status = dict(conn.execute("SELECT model_id, status FROM models").fetchall())
        metrics = conn.execute("SELECT metrics FROM models WHERE model_id = 'b'").fetchone()[0]
    lost = set(range(total)) - kept - set(refused)
    kinds = {k: list(refused.values()).count(k) for k in set(refused.values())}
    print(
        f"\nregistry.events fuzz ({N} mutations): believed {len(believed)}, refused {kinds}, "
        f"lost {len(lost)}"
    )
    assert lost == set()
    assert believed == {0, 1, 2, 3, total - 2, total - 1}  # the honest events, and only them
    assert status == {"a": "active", "b": "training"}
    assert orjson.loads(metrics)["accuracy"] == 70
