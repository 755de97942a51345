"""Secrets at the write path's edge: refused by the client before sending, refused by the
decider when a module sends them anyway, and never stored, echoed or logged."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.core.errors import SecretInConfig
from registry.core.types import Status
from registry.decider.decider import Decider
from registry.infra.settings import Settings
from tests.core.test_secrets import FAKE, LEAKS
from tests.helpers import eventually, model_config, read_topic, signed

TOPICS = ("registry.commands", "registry.events", "registry.replies", "registry.commands.dlq")


async def _everything(settings: Settings) -> list[bytes]:
    out = []
    for name in TOPICS:
        for record in await read_topic(settings, name):
            out.append(record.value or b"")
            out.extend(v for _, v in record.headers)
    return out


async def test_the_client_refuses_a_secret_before_sending(
    registry: ModelRegistry, settings: Settings
) -> None:
    secret = FAKE["anthropic"]
    with pytest.raises(SecretInConfig) as refused:
        await registry.register(model_config("m1", description=f"key {secret}"))
    assert refused.value.field == "payload.description"
    assert secret not in str(refused.value)
    await registry.register(model_config("m1"))
    with pytest.raises(SecretInConfig):
        await registry.update_status("m1", Status.TESTING, reason=f"rotated {FAKE['aws']}")
    assert await read_topic(settings, "registry.events") != []  # the registration went through
    assert not any(
        FAKE["aws"].encode() in v or secret.encode() in v for v in await _everything(settings)
    )


async def test_the_decider_refuses_every_leak_and_echoes_none(
    decider: Decider, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="registry")
    sent: dict[str, tuple[dict[str, Any], str]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for i, (_name, message, path) in enumerate(LEAKS):
            message = {**message, "id": f"leak-{i}"}
            if message["type"] == "RegisterModel":
                message["payload"] = {**message["payload"], "id": message["model_id"]}
            value = orjson.dumps(message)
            await producer.send_and_wait(
                settings.topic("registry.commands"),
                value,
                key=message["model_id"].encode(),
                headers=signed(settings, value),
            )
            sent[f"leak-{i}"] = (message, path)
    finally:
        await producer.stop()

    async def replies() -> dict[str, Any] | None:
        got = {
            r.key.decode(): orjson.loads(r.value)
            for r in await read_topic(settings, "registry.replies")
        }
        return got if set(sent) <= set(got) else None

    got = await eventually(replies, what="a reply to every leak")
    for command_id, (_, path) in sent.items():
        rejection = got[command_id]["rejection"]
        assert rejection["code"] == "SecretInConfig", (command_id, rejection)
        assert rejection["field"] == path
    assert await read_topic(settings, "registry.events") == []
    assert await read_topic(settings, "registry.commands.dlq") == []  # not copied anywhere
    # Nothing but the commands topic itself (the module's own mistake) holds a secret.
    stored = [
        v
        for name in TOPICS[1:]
        for r in await read_topic(settings, name)
        for v in [r.value or b"", *(h for _, h in r.headers)]
    ]
    lines = [
        r.getMessage() + repr(r.__dict__) for r in caplog.records if r.name.startswith("registry")
    ]
    for secret in [*FAKE.values(), "hunter2", "abc123", "AbC%2Bd", "p4ss"]:
        assert not any(secret.encode() in v for v in stored), secret
        assert not any(secret in line for line in lines), secret


async def test_an_unreadable_command_holding_a_secret_is_dead_lettered_without_its_bytes(
    decider: Decider, settings: Settings
) -> None:
    secret = FAKE["github"]
    value = b'{"id": "broken-1", "type": "RegisterModel", "payload": {"note": "' + secret.encode()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("registry.commands"), value, key=b"m", headers=signed(settings, value)
        )
    finally:
        await producer.stop()

    async def dead() -> list[Any] | None:
        return await read_topic(settings, "registry.commands.dlq") or None

    (letter,) = await eventually(dead, what="the dead letter")
    headers = dict(letter.headers)
    assert headers["dlq.form"] == b"reference"
    assert b"withheld" in headers["dlq.reason"]
    assert secret.encode() not in letter.value
    assert all(secret.encode() not in v for v in headers.values())
