"""Contract 1.1 at the decider: a command must carry its id and type, and a rejection's reply
says what is readable of the command (type, model id) and the model's current revision.
Every reply is checked against the exported schema."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.decider.decider import Decider
from registry.infra.settings import Settings
from tests.helpers import eventually, model_config, read_topic, signed
from tests.model_registry.test_schemas import validator


async def _send(settings: Settings, *commands: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for command in commands:
            value = orjson.dumps(command)
            await producer.send_and_wait(
                settings.topic("registry.commands"),
                value,
                key=b"m-1",
                headers=signed(settings, value),
            )
    finally:
        await producer.stop()


async def test_rejections_say_what_is_readable_and_the_current_revision(
    decider: Decider, registry: ModelRegistry, settings: Settings
) -> None:
    result = await registry.register(model_config("m-1"))
    assert result.revision == 1
    ids = {name: str(uuid.uuid4()) for name in ("stale", "bad_status", "no_type", "unknown")}
    await _send(
        settings,
        # a conflict: the reply names the model's current revision
        {
            "id": ids["stale"],
            "type": "ChangeStatus",
            "model_id": "m-1",
            "expected_revision": 0,
            "payload": {"status": "testing"},
        },
        # invalid (dead-lettered): its type and model id are readable, so the reply has them
        {
            "id": ids["bad_status"],
            "type": "ChangeStatus",
            "model_id": "m-1",
            "payload": {"status": "flying"},
        },
        # no type in the JSON (only in a header would not do)
        {"id": ids["no_type"], "model_id": "m-1", "payload": {"status": "testing"}},
        # an unknown model: no revision to give
        {
            "id": ids["unknown"],
            "type": "ChangeStatus",
            "model_id": "nobody",
            "payload": {"status": "testing"},
        },
        # no id: nobody to answer; the DLQ has it
        {"type": "ChangeStatus", "model_id": "m-1", "payload": {"status": "testing"}},
    )

    async def replies() -> dict[str, Any] | None:
        got = {
            r.key.decode(): orjson.loads(r.value)
            for r in await read_topic(settings, "registry.replies")
        }
        return got if set(ids.values()) <= set(got) else None

    got = await eventually(replies, what="replies to the refused commands")
    for reply in got.values():
        validator("CommandReply.json").validate(reply)
        assert None not in reply.values(), "absent, never null"
    stale = got[ids["stale"]]
    assert stale["rejection"]["code"] == "VersionConflict"
    assert (stale["command_type"], stale["model_id"], stale["revision"]) == (
        "ChangeStatus",
        "m-1",
        1,
    )
    bad = got[ids["bad_status"]]
    assert bad["rejection"]["code"] == "InvalidCommand"
    assert (bad["command_type"], bad["model_id"], bad["revision"]) == ("ChangeStatus", "m-1", 1)
    no_type = got[ids["no_type"]]
    assert "needs its `type` in its JSON" in no_type["rejection"]["message"]
    assert "command_type" not in no_type
    unknown = got[ids["unknown"]]
    assert unknown["rejection"]["code"] == "ModelNotFound"
    assert "revision" not in unknown
    dlq = await read_topic(settings, "registry.commands.dlq")
    reasons = [dict(r.headers).get("dlq.reason", b"").decode() for r in dlq]
    assert any("needs an `id`" in reason for reason in reasons), reasons
