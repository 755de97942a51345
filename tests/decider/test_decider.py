"""The write path against a real broker: decider, replies, dedupe, concurrency, DLQ."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from model_registry.client import ModelRegistry
from registry.core.errors import Rejected, RejectionCode
from registry.core.messages import RecordMetrics, RecordMetricsPayload
from registry.core.rules import LEGAL_TRANSITIONS
from registry.core.types import Metrics, Status
from registry.decider.decider import Decider
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import DeciderSettings, Settings
from tests.helpers import eventually, model_config, read_events, read_topic, signed

# The path from a fresh model to each status, through legal transitions only.
PATH_TO = {
    Status.TRAINING: [],
    Status.TESTING: [Status.TESTING],
    Status.ACTIVE: [Status.TESTING, Status.ACTIVE],
    Status.DEPRECATED: [Status.TESTING, Status.ACTIVE, Status.DEPRECATED],
}


async def test_every_transition_is_accepted_or_rejected_by_the_rules(
    registry: ModelRegistry, settings: Settings
) -> None:
    statuses = [Status.TRAINING, Status.TESTING, Status.ACTIVE, Status.DEPRECATED]
    for i, (src, dst) in enumerate(itertools.product(statuses, statuses)):
        if src is dst:
            continue
        model_id = f"m{i}"
        await registry.register(model_config(model_id))
        for step in PATH_TO[src]:
            await registry.update_status(model_id, step)
        if (src, dst) in LEGAL_TRANSITIONS:
            result = await registry.update_status(model_id, dst)
            assert result.outcome == "accepted"
            assert len(result.events) == 1
        else:
            with pytest.raises(Rejected) as info:
                await registry.update_status(model_id, dst)
            assert info.value.rejection.code is RejectionCode.INVALID_TRANSITION
            assert str(src) in info.value.rejection.message
    # unregister: only from deprecated
    await registry.register(model_config("u1"))
    with pytest.raises(Rejected) as info:
        await registry.unregister("u1")
    assert info.value.rejection.code is RejectionCode.INVALID_TRANSITION
    for step in PATH_TO[Status.DEPRECATED]:
        await registry.update_status("u1", step)
    assert (await registry.unregister("u1")).events[0].type == "ModelUnregistered"


async def test_concurrent_clients_leave_a_gap_free_sequence(
    registry: ModelRegistry, settings: Settings, decider: object
) -> None:
    await registry.register(model_config("race", status="active"))
    clients = [ModelRegistry(settings, actor=f"client-{i}") for i in range(20)]
    await asyncio.gather(*(c.start() for c in clients))
    try:
        # Half send blind updates, half race with expected_revision=1 (only one can win).
        async def attempt(i: int, c: ModelRegistry) -> str:
            try:
                if i % 2:
                    await c.record_metrics("race", {"accuracy": float(i)})
                else:
                    await c.record_metrics("race", {"accuracy": float(i)}, expected_revision=1)
                return "applied"
            except Rejected as exc:
                return f"rejected {exc.rejection.code}: {exc.rejection.message}"

        outcomes = await asyncio.gather(*(attempt(i, c) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    events = [e for e in await read_events(settings) if e.model_id == "race"]
    assert [e.revision for e in events] == list(range(1, len(events) + 1))
    rejected = [o for o in outcomes if o != "applied"]
    assert all(o.startswith("rejected VersionConflict: ") and "revision" in o for o in rejected)
    applied = outcomes.count("applied")
    assert len(events) == 1 + applied
    assert 10 <= applied <= 11  # every blind write plus at most one conditional winner
    assert len({e.causation_id for e in events}) == len(events)  # each command applied once


async def test_duplicate_command_id_is_applied_once(
    registry: ModelRegistry, settings: Settings
) -> None:
    await registry.register(model_config("dup"))
    command = RecordMetrics(
        model_id="dup", payload=RecordMetricsPayload(metrics=Metrics(accuracy=90))
    )
    first = await registry.send(command)
    second = await registry.send(command)
    assert first.outcome == "accepted"
    assert second.outcome == "duplicate"
    assert second.events == first.events
    events = [e for e in await read_events(settings) if e.model_id == "dup"]
    assert [e.type for e in events] == ["ModelRegistered", "ModelMetricsRecorded"]


async def test_identical_registration_is_a_noop_and_versions_never_go_back(
    registry: ModelRegistry,
) -> None:
    cfg = model_config("v", version="1.2.0")
    assert len((await registry.register(cfg)).events) == 1
    again = await registry.register(cfg)
    assert again.events == ()
    assert again.revision == 1
    with pytest.raises(Rejected) as info:
        await registry.release_version("v", "1.1.9")
    assert info.value.rejection.code is RejectionCode.VERSION_REGRESSION
    with pytest.raises(Rejected) as info:
        await registry.release_version("v", "2.0.0")
    assert info.value.rejection.code is RejectionCode.MAJOR_VERSION_MISMATCH
    released = await registry.release_version("v", "1.10.0", status="testing")
    assert released.revision == 2


async def test_hand_built_json_from_another_language(
    registry: ModelRegistry, settings: Settings
) -> None:
    """A CRM module writes plain JSON (no project classes) and reads its reply by command id."""
    command_id = str(uuid.uuid4())
    raw = {
        "id": command_id,
        "type": "RegisterModel",
        "model_id": "churn-v1",
        "actor": "crm-typescript",
        "payload": {
            "id": "churn-v1",
            "name": "Churn",
            "version": "1.0.0",
            "type": "classification",
            "provider": "aws-sagemaker",
            "description": "churn from TS",
            "status": "testing",
            "providerConfig": {
                "provider": "aws-sagemaker",
                "endpoint": "https://runtime.sagemaker.us-east-1.amazonaws.com",
                "endpointName": "churn-v1",  # without it the model could never serve
                "credentials": {
                    "accessKeyId": "env:AWS_ACCESS_KEY_ID",
                    "secretAccessKey": "env:AWS_SECRET",
                    "region": "us-east-1",
                },
            },
            "metrics": {"accuracy": 87.5, "f1Score": 87.1},
        },
    }
    bad_id = str(uuid.uuid4())
    malformed = {
        "id": bad_id,
        "type": "ChangeStatus",
        "model_id": "churn-v1",
        "payload": {"status": "flying"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        topic = settings.topic("registry.commands")
        for value in (b"{not json", orjson.dumps(malformed), orjson.dumps(raw)):
            headers = signed(settings, value)  # as a TypeScript module signs (docs/security.md)
            await producer.send_and_wait(topic, value, key=b"churn-v1", headers=headers)
    finally:
        await producer.stop()
    replies = await eventually(lambda: _replies(settings, command_id, bad_id))
    assert replies[command_id]["outcome"] == "accepted"
    assert replies[command_id]["revision"] == 1
    assert replies[bad_id]["outcome"] == "rejected"
    assert replies[bad_id]["rejection"]["code"] == "InvalidCommand"  # type: ignore[index]
    assert "status" in replies[bad_id]["rejection"]["message"]  # type: ignore[index]
    dlq = await read_topic(settings, "registry.commands.dlq")
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in dlq]
    assert len(dlq) == 2
    assert "malformed JSON" in reasons[0]
    assert "status" in reasons[1]
    assert dlq[0].value == b"{not json"  # the original bytes, kept


async def test_raw_secret_is_rejected_and_never_written(
    registry: ModelRegistry, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-" + uuid.uuid4().hex  # built at run time: obviously fake
    command_id = str(uuid.uuid4())
    raw = {
        "id": command_id,
        "type": "RegisterModel",
        "model_id": "leaky",
        "payload": {
            "id": "leaky",
            "name": "Leaky",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "openai",
            "credentials": {"apiKey": secret},
        },
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        value = orjson.dumps(raw)
        await producer.send_and_wait(
            settings.topic("registry.commands"),
            value,
            key=b"leaky",
            headers=signed(settings, value),
        )
    finally:
        await producer.stop()
    reply = (await eventually(lambda: _replies(settings, command_id)))[command_id]
    assert reply["outcome"] == "rejected"
    assert reply["rejection"]["code"] == "SecretInConfig"
    assert reply["rejection"]["field"] == "payload.credentials.apiKey"
    for name in ("registry.events", "registry.replies", "registry.commands.dlq"):
        for record in await read_topic(settings, name):
            assert secret.encode() not in record.value
    # our own log lines (aiokafka's DEBUG lines echo the test producer's raw bytes, as a
    # CRM's client library would on its side)
    ours = [
        r.getMessage() + str(r.__dict__)
        for r in caplog.records
        if r.name.split(".")[0] in {"model_registry", "registry", "projections", "consumers"}
    ]
    assert ours, "the decider logged nothing at DEBUG level; the check would be vacuous"
    assert not any(secret in line for line in ours)


async def test_ab_rules(registry: ModelRegistry) -> None:
    await registry.register(model_config("champ", status="active"))
    await registry.register(model_config("chal", status="testing"))
    await registry.register(model_config("other", status="active", type="regression"))
    with pytest.raises(Rejected) as info:
        await registry.start_ab_test("chal", "champ", 20)
    assert info.value.rejection.code is RejectionCode.AB_TEST_INVALID  # challenger not active
    await registry.update_status("chal", "active")
    with pytest.raises(Rejected) as info:
        await registry.start_ab_test("other", "champ", 20)
    assert "type" in info.value.rejection.message
    started = await registry.start_ab_test("chal", "champ", 20)
    assert started.events[0].type == "ABTestStarted"
    await registry.register(model_config("chal2", status="active"))
    with pytest.raises(Rejected) as info:
        await registry.start_ab_test("chal2", "champ", 10)
    assert info.value.rejection.code is RejectionCode.AB_TEST_CONFLICT
    with pytest.raises(Rejected) as info:
        await registry.update_status("champ", "deprecated")
    assert info.value.rejection.code is RejectionCode.AB_TEST_RUNNING
    assert (await registry.change_traffic("chal", 35)).events[0].type == "ABTestTrafficChanged"
    assert (await registry.stop_ab_test("chal")).events[0].type == "ABTestStopped"
    with pytest.raises(Rejected) as info:
        await registry.stop_ab_test("chal")
    assert info.value.rejection.code is RejectionCode.AB_TEST_NOT_RUNNING


async def test_clear_is_refused_unless_allowed_and_is_recorded(settings: Settings) -> None:
    for allowed in (False, True):
        s = settings.with_(
            decider=DeciderSettings(allow_clear=allowed),
            topic_prefix=settings.topic_prefix + f"{allowed}.",
        )
        await ensure_topics(s)
        d = Decider(s)
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        await asyncio.wait_for(d.ready.wait(), 20)
        try:
            async with ModelRegistry(s) as reg:
                await reg.register(model_config("c1"))
                if not allowed:
                    with pytest.raises(Rejected) as info:
                        await reg.clear()
                    assert info.value.rejection.code is RejectionCode.CLEAR_NOT_ALLOWED
                else:
                    result = await reg.clear(reason="test reset")
                    assert result.events[0].type == "RegistryCleared"
                    events = await read_events(s)
                    assert [e.type for e in events] == ["ModelRegistered", "RegistryCleared"]
                    assert events[1].payload.model_ids == ["c1"]  # type: ignore[attr-defined]
                    # history kept; the id can be registered again and its revision goes on
                    again = await reg.register(model_config("c1"))
                    assert again.revision == 2
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def _replies(settings: Settings, *command_ids: str) -> dict[str, Any] | None:
    """Every reply on ``registry.replies`` by command id, once all of ``command_ids`` are in."""
    replies = {
        r.key.decode(): orjson.loads(r.value)
        for r in await read_topic(settings, "registry.replies")
    }
    return replies if all(c in replies for c in command_ids) else None
