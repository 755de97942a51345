"""The codec: every command and event type round-trips; bad bytes give a typed DecodeError."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core import codec
from registry.core import messages as m
from registry.core.errors import DecodeError
from registry.core.types import Metrics, ModelConfig

CFG = ModelConfig.model_validate(
    {
        "id": "lead-scoring-v1",
        "name": "Lead scoring",
        "version": "1.2.3-rc.1",
        "type": "classification",
        "provider": "aws-sagemaker",
        "description": "d",
        "endpoint": "https://x.test/invocations",
        "credentials": {"accessKeyId": "env:AK", "region": "us-east-1"},
        "providerConfig": {
            "provider": "aws-sagemaker",
            "endpointName": "ls",
            "credentials": {"secretAccessKey": "file:/run/s"},
        },
        "parameters": {"depth": 3, "features": ["a", "b"]},
        "metrics": {"accuracy": 87.5, "mse": 0.1},
        "lastTrained": "2026-11-01T00:00:00Z",
        "status": "active",
        "abTest": {"enabled": True, "trafficPercentage": 20, "championModelId": "lead-scoring-v0"},
    }
)
ENV: dict[str, Any] = {
    "model_id": "lead-scoring-v1",
    "actor": "me",
    "correlation_id": "c1",
    "causation_id": "k1",
    "occurred_at": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
}
CHANGES = m.ConfigChanges(description="new", parameters={"x": 1})

COMMANDS = [
    m.RegisterModel(payload=CFG, **ENV, expected_revision=0),
    m.ReleaseVersion(
        payload=m.ReleaseVersionPayload(
            version="1.3.0", status="testing", metrics=Metrics(mae=2), changes=CHANGES
        ),
        **ENV,
    ),
    m.ChangeStatus(payload=m.ChangeStatusPayload(status="deprecated", reason="old"), **ENV),
    m.RecordMetrics(payload=m.RecordMetricsPayload(metrics=Metrics(f1_score=80)), **ENV),
    m.UpdateConfig(payload=m.UpdateConfigPayload(changes=CHANGES), **ENV),
    m.StartABTest(
        payload=m.StartABTestPayload(
            champion_model_id="a", traffic_percentage=20, routing="random"
        ),
        **ENV,
    ),
    m.ChangeABTraffic(payload=m.ChangeABTrafficPayload(traffic_percentage=30), **ENV),
    m.StopABTest(payload=m.ReasonPayload(reason="done"), **ENV),
    m.UnregisterModel(**ENV),
    m.ClearRegistry(**{**ENV, "model_id": m.REGISTRY_KEY}),
    m.PromoteChallenger(
        payload=m.PromotePayload(
            reason="better",
            evidence=m.Evidence(verdict="challenger better", figures={"requests": 900}),
        ),
        **ENV,
    ),
    m.RollbackPromotion(payload=m.ReasonPayload(reason="regression"), **ENV),
    m.AssignAlias(payload=m.AliasPayload(alias="lead-scoring@production"), **ENV),
    m.RemoveAlias(payload=m.AliasPayload(alias="lead-scoring@production"), **ENV),
]
EVENTS = [
    m.ModelRegistered(payload=CFG, revision=1, **ENV),
    m.ModelVersionReleased(
        payload=m.ModelVersionReleasedPayload(
            version="1.3.0", previous_version="1.2.3", status="testing", changes=CHANGES
        ),
        revision=2,
        **ENV,
    ),
    m.ModelStatusChanged(
        payload=m.ModelStatusChangedPayload(**{"from": "active", "to": "deprecated"}),
        revision=3,
        **ENV,
    ),
    m.ModelMetricsRecorded(
        payload=m.RecordMetricsPayload(metrics=Metrics(recall=1)), revision=4, **ENV
    ),
    m.ModelConfigUpdated(payload=m.UpdateConfigPayload(changes=CHANGES), revision=5, **ENV),
    m.ABTestStarted(
        payload=m.ABTestStartedPayload(test_id="t", champion_model_id="a", traffic_percentage=20),
        revision=6,
        **ENV,
    ),
    m.ABTestTrafficChanged(
        payload=m.ABTestTrafficChangedPayload(
            test_id="t", previous_percentage=20, traffic_percentage=30, split_version=2
        ),
        revision=7,
        **ENV,
    ),
    m.ABTestStopped(payload=m.ABTestStoppedPayload(test_id="t"), revision=8, **ENV),
    m.ModelUnregistered(payload=m.ModelUnregisteredPayload(version="1.3.0"), revision=9, **ENV),
    m.RegistryCleared(
        payload=m.RegistryClearedPayload(model_ids=["a"]),
        revision=1,
        **{**ENV, "model_id": m.REGISTRY_KEY},
    ),
    m.ChallengerPromoted(
        payload=m.ChallengerPromotedPayload(
            test_id="t",
            champion_model_id="a",
            champion_version="1.0.0",
            version="1.3.0",
            aliases=["lead-scoring@production"],
            evidence=m.Evidence(verdict="challenger better", figures={"requests": 900}),
        ),
        revision=10,
        **ENV,
    ),
    m.PromotionRolledBack(
        payload=m.PromotionRolledBackPayload(restored_model_id="a", restored_version="1.0.0"),
        revision=11,
        **ENV,
    ),
    m.AliasAssigned(
        payload=m.AliasAssignedPayload(alias="lead-scoring@production", previous_model_id="a"),
        revision=12,
        **ENV,
    ),
    m.AliasRemoved(payload=m.AliasPayload(alias="lead-scoring@production"), revision=13, **ENV),
]


def test_every_type_is_covered() -> None:
    assert {type(c) for c in COMMANDS} == set(m.COMMANDS.values())
    assert {type(e) for e in EVENTS} == set(m.EVENTS.values())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.type)
def test_command_round_trip(command: m.CommandBase) -> None:
    data = codec.encode(command)
    assert codec.decode_command(data) == command
    assert codec.headers_for(command) == [("type", command.type.encode())]  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_event_round_trip(event: m.EventBase) -> None:
    data = codec.encode(event)
    assert codec.decode_event(data) == event
    assert codec.encode(codec.decode_event(data)) == data  # stable bytes


def test_wire_uses_camel_case_payloads_and_snake_case_envelope() -> None:
    wire = orjson.loads(codec.encode(EVENTS[0]))
    assert {"model_id", "schema_version", "occurred_at", "causation_id"} <= wire.keys()
    assert {"providerConfig", "lastTrained", "abTest"} <= wire["payload"].keys()
    assert wire["payload"]["abTest"]["trafficPercentage"] == 20


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{oops", "malformed JSON"),
        (b"[1,2]", "JSON object"),
        (None, "empty"),
        (b'{"type": "ModelExploded"}', "unknown event type"),
        (
            b'{"type": "ModelRegistered", "model_id": "x", "revision": 0, "payload": {}}',
            "invalid ModelRegistered",
        ),
        (b'{"type": "ModelRegistered", "schema_version": 99}', "newer than this reader"),
        (b'{"type": ["ModelRegistered"]}', "unknown event type"),
        (b'{"type": {"a": 1}}', "unknown event type"),
    ],
)
def test_bad_bytes_give_one_typed_error(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_event(data)
    assert reason in info.value.reason


def test_events_without_their_own_id_or_time_are_refused() -> None:
    wire = orjson.loads(codec.encode(EVENTS[3]))
    for field in ("id", "occurred_at"):
        partial = {k: v for k, v in wire.items() if k != field}
        with pytest.raises(DecodeError, match=field):
            codec.decode_event(orjson.dumps(partial))


def test_null_changes_are_refused() -> None:
    with pytest.raises(ValueError, match="null"):
        m.ConfigChanges.model_validate({"description": None})
    with pytest.raises(ValueError, match="null"):
        m.ConfigChanges(endpoint=None)


def test_decode_error_carries_a_readable_message_id() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_command(
            b'{"id": "cmd-1", "type": "ChangeStatus", "model_id": "m", '
            b'"payload": {"status": "flying"}}'
        )
    assert info.value.message_id == "cmd-1"
    assert "payload.status" in info.value.reason


def test_upcaster_reads_old_schema_versions() -> None:
    """Old versions are upcast on read; a missing upcaster is a typed error, not a crash."""
    old = orjson.loads(codec.encode(EVENTS[3]))
    old["schema_version"] = 0
    old["payload"]["metrics"]["recallPct"] = old["payload"]["metrics"].pop("recall")
    with pytest.raises(DecodeError, match="no upcaster"):
        codec.decode_event(orjson.dumps(old))

    @codec.upcaster("ModelMetricsRecorded", 0)
    def _v0_to_v1(msg: dict[str, Any]) -> dict[str, Any]:
        msg["payload"]["metrics"]["recall"] = msg["payload"]["metrics"].pop("recallPct")
        return msg

    try:
        assert codec.decode_event(orjson.dumps(old)) == EVENTS[3]
    finally:
        codec._UPCASTERS.pop(("ModelMetricsRecorded", 0))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    for decode in (codec.decode_event, codec.decode_command):
        with contextlib.suppress(DecodeError):
            decode(data)


@given(
    st.dictionaries(
        st.sampled_from(["id", "type", "model_id", "revision", "payload", "schema_version"]),
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63 - 1),
            st.text(max_size=5),
            st.sampled_from([t.__name__ for t in m.EVENTS.values()]),
        ),
    )
)
def test_arbitrary_json_objects_never_raise_anything_but_decode_error(obj: dict[str, Any]) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode_event(orjson.dumps(obj))
