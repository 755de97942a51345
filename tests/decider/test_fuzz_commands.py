"""Fuzz ``registry.commands``: thousands of signed, mutated commands; none stops the decider,
none is lost, and a valid command is served right after them.

Accounting: every record ends as exactly one of *answered* (accepted or duplicate),
*rejected* (a typed reply) or *dead-lettered* (in ``registry.commands.dlq``, found by its
source offset; a readable id also gets a rejection reply, counted once, as dead-lettered).
A command whose mutation removed its ``id`` is answered under an id the decider gave it:
those replies are counted by number.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.decider.decider import Decider
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config, read_topic, signed
from tests.mutations import mutations

N = 1500
SEED = 1413


def _valid() -> list[dict[str, Any]]:
    base = {"model_id": "fz", "actor": "fuzzer"}
    return [
        {**base, "type": "RegisterModel", "payload": model_config("fz")},
        {**base, "type": "ChangeStatus", "payload": {"status": "testing", "reason": "ok"}},
        {**base, "type": "RecordMetrics", "payload": {"metrics": {"accuracy": 90, "mae": 0.1}}},
        {
            **base,
            "type": "UpdateConfig",
            "payload": {"changes": {"description": "d", "parameters": {"t": [1, 2]}}},
        },
        {
            **base,
            "type": "ReleaseVersion",
            "payload": {"version": "1.1.0", "status": "testing", "metrics": {"accuracy": 91}},
        },
        {
            **base,
            "type": "StartABTest",
            "payload": {"championModelId": "other", "trafficPercentage": 20},
        },
    ]


async def test_mutated_commands_are_each_accounted_for(
    decider: Decider, registry: ModelRegistry, settings: Settings
) -> None:
    sent = list(mutations(_valid(), SEED, N, id_prefix="fz-", large_bytes=300_000))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    offsets = []
    try:
        futures = [
            await producer.send(
                settings.topic("registry.commands"),
                m.value,
                key=b"fz",
                headers=signed(settings, m.value),
            )
            for m in sent
        ]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    started = time.monotonic()
    probe = await registry.register(model_config("probe-after-fuzz"))
    served_in = time.monotonic() - started
    assert probe.revision == 1

    async def settled() -> bool:
        return decider.stats.commands >= N + 1

    await eventually(settled, timeout=60, what="the decider to read every record")
    dlq = {
        int(dict(r.headers)["dlq.source.offset"])
        for r in await read_topic(settings, "registry.commands.dlq")
    }
    replies = {
        r.key.decode(): orjson.loads(r.value)["outcome"]
        for r in await read_topic(settings, "registry.replies")
    }
    tags = {f"fz-{i}" for i in range(N)}
    counts = {"answered": 0, "rejected": 0, "dead-lettered": 0, "lost": 0}
    unmatched = 0
    for m, offset in zip(sent, offsets, strict=True):
        if offset in dlq:
            counts["dead-lettered"] += 1
        elif m.id in replies and m.id in tags:
            counts["rejected" if replies[m.id] == "rejected" else "answered"] += 1
        else:
            unmatched += 1
    invented = len([k for k in replies if k not in tags]) - 1  # minus the probe's reply
    counts["answered"] += min(unmatched, invented)
    counts["lost"] = unmatched - min(unmatched, invented)
    print(f"\nregistry.commands fuzz ({N} mutations): {counts}; probe served in {served_in:.2f}s")
    assert counts["lost"] == 0, counts
    assert sum(counts.values()) == N
    assert counts["dead-lettered"] > 0  # the fuzz reached both outcomes
    assert counts["rejected"] > 0
    assert served_in < 10  # behind 1,500 records, most of them dead letters
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 400, f"memory grew by {grown_mb:.0f} MB"
