"""No command can stop the decider (issue 14): deep nesting, huge values, anything.

Each poison record ends as a rejection (a typed reply to its id) or a dead letter, and a
valid command sent right after it is accepted.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.decider.decider import Decider
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config, read_topic, signed


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _register(command_id: str, **payload: Any) -> bytes:
    config = {**model_config("deep"), **payload}
    return orjson.dumps(
        {"id": command_id, "type": "RegisterModel", "model_id": "deep", "payload": config},
    )


def _deep_json(command_id: str, depth: int) -> bytes:
    """A command whose parameters nest ``depth`` levels (built as text: orjson refuses to
    write past 255 levels, which is how this once killed the decider)."""
    head = orjson.dumps(
        {
            "id": command_id,
            "type": "RegisterModel",
            "model_id": "deep",
            "payload": model_config("deep"),
        }
    )
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    return head[:-2] + b',"parameters":' + nested + b"}}"


async def test_poison_commands_are_refused_and_the_decider_goes_on(
    decider: Decider, registry: ModelRegistry, settings: Settings
) -> None:
    ids = {name: str(uuid.uuid4()) for name in ("d300", "d1000", "huge", "wide")}
    poison = {
        "d300": _deep_json(ids["d300"], 300),
        "d1000": _deep_json(ids["d1000"], 1000),
        "huge": _register(ids["huge"], description="x" * 300_000),
        "wide": _register(ids["wide"], parameters={f"k{i}": i for i in range(30_000)}),
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        for value in poison.values():
            await producer.send_and_wait(
                settings.topic("registry.commands"),
                value,
                key=b"deep",
                headers=signed(settings, value),
            )
    finally:
        await producer.stop()
    # a valid command right behind them is served
    result = await registry.register(model_config("after"))
    assert result.revision == 1

    async def replies() -> dict[str, Any] | None:
        got = {
            r.key.decode(): orjson.loads(r.value)
            for r in await read_topic(settings, "registry.replies")
        }
        want = {ids["d300"], ids["huge"], ids["wide"]}  # d1000's id is not readable
        return got if want <= set(got) else None

    got = await eventually(replies, what="replies to the poison commands")
    for name in ("d300", "huge", "wide"):
        rejection = got[ids[name]]["rejection"]
        assert rejection["code"] == "OverLimit", (name, rejection)
        assert "x" * 100 not in rejection["message"]
    assert "deeper than the limit of 32" in got[ids["d300"]]["rejection"]["message"]
    assert "over the limit of 262144 bytes" in got[ids["huge"]]["rejection"]["message"]
    dlq = await read_topic(settings, "registry.commands.dlq")
    assert len(dlq) == 4  # every poison record, and nothing else
    events = [
        orjson.loads(r.value)["model_id"] for r in await read_topic(settings, "registry.events")
    ]
    assert events == ["after"]
    assert decider.stats.dead_lettered == 4


async def test_the_decider_refuses_a_registry_topic_with_several_partitions(
    settings: Settings,
) -> None:
    """One total order of every change: a registry topic split in three is refused, with a
    sentence, instead of deciding A/B tests on a partition's share of the models."""
    import pytest
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from registry.decider.decider import RegistryTopicLayout
    from registry.infra.kafka.topics import ensure_topics

    split = settings.with_(topic_prefix=settings.topic_prefix + "split.")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(split.topic("registry.events"), 3, 1)])
    finally:
        await admin.close()
    await ensure_topics(split)  # creates the others, leaves the split one as it is
    decider = Decider(split)
    with pytest.raises(RegistryTopicLayout, match="registry.events has 3 partitions"):
        await decider.run(asyncio.Event())
