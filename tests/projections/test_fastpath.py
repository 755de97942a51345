"""The fast check is the careful path, only faster; the one fold is the reference fold.

Histories come from the core's own ``decide`` (configs of every shape the models accept);
each is folded twice, fast (``fold_batch``) and careful (``fold_batch(..., fast=False)``:
the pydantic models for every record), cut into batches anywhere, and written to real
SQLite files: the files must be identical, the fold must equal a reference fold written the
slow, obvious way with pydantic (``tests/core/oracle.py``), and the fast run must not have
needed the careful path. Then records mangled in every way (types, ranges, names, times,
secrets, versions, bytes) go through both: the fast check must either give exactly the
careful result or leave the record to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from projections.rows import BatchRows, fold_batch
from registry.core import codec
from registry.core.errors import Rejection, SecretInConfig
from registry.core.fastcheck import _CAREFUL_ONLY, check
from registry.core.messages import (
    ABTestStarted,
    AliasPayload,
    AssignAlias,
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    ClearRegistry,
    ClearRegistryPayload,
    CommandBase,
    ConfigChanges,
    EventBase,
    PromoteChallenger,
    PromotePayload,
    ReasonPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    RemoveAlias,
    RollbackPromotion,
    StartABTest,
    StartABTestPayload,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.rules import decide
from registry.core.state import RegistryState
from registry.core.types import Guardrails, Metrics, ModelConfig, ModelType, Provider, Status
from tests.core import oracle
from tests.projections.tables import assert_matches_fold, assert_same_tables
from tests.projections.test_fold import TOPIC, build

IDS = ("m1", "m2", "m3", "m4")
T0 = datetime(2026, 3, 1, tzinfo=UTC)

# --------------------------------------------------------------------------- histories

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
percents = st.one_of(st.integers(0, 100), st.floats(0, 100))
metrics = st.builds(
    Metrics,
    accuracy=st.none() | percents,
    precision=st.none() | percents,
    recall=st.none() | percents,
    f1_score=st.none() | percents,
    mse=st.none() | st.floats(0, 1e9),
    mae=st.none() | st.integers(0, 10**6),
)
json_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | finite | st.text(max_size=6)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
settings = st.dictionaries(
    st.sampled_from(["endpointName", "region", "tokenizer", "model", "deploymentId"]),
    st.integers(0, 99) | st.text(max_size=4) | json_values,
    max_size=3,
) | st.builds(lambda n: {"maxTokens": n}, st.integers(1, 4096))  # secret-looking, not a string
provider_configs = st.builds(
    lambda provider, endpoint, creds, extra: {
        "provider": provider,
        **({"endpoint": endpoint} if endpoint else {}),
        **({"credentials": creds} if creds is not None else {}),
        **extra,
    },
    st.sampled_from([p.value for p in Provider]),
    st.none() | st.just("https://api.example.com/v1"),
    st.none() | st.just({"apiKey": "env:API_KEY", "region": "eu-west-1"}),
    settings,
)
times = st.builds(
    lambda s, us, tz: (T0 + timedelta(seconds=s, microseconds=us)).astimezone(tz),
    st.integers(0, 10**6),
    st.sampled_from([0, 0, 500_000, 123_456]),
    st.sampled_from([UTC, timezone(timedelta(hours=2))]),
)
ab_configs = st.builds(
    lambda enabled, pct, champion: {
        "enabled": enabled,
        "trafficPercentage": pct,
        "championModelId": champion,
    },
    st.booleans(),
    percents,
    st.sampled_from(IDS),
)


def _config(model_id: str, draw: Any, version: str) -> ModelConfig:
    data: dict[str, Any] = {
        "id": model_id,
        "name": draw(st.sampled_from(["Lead scoring", "Churn", "x" * 200])),
        "version": version,
        "type": draw(st.sampled_from([ModelType.CLASSIFICATION, ModelType.NLP])).value,
        "provider": draw(st.sampled_from([p.value for p in Provider])),
        "status": draw(st.sampled_from(["training", "testing", "active"])),
    }
    optional: dict[str, Any] = {
        "description": st.text(max_size=20),
        "endpoint": st.just("https://models.example.com/predict"),
        "credentials": st.just({"apiKey": "env:MODEL_KEY", "service": "ml"}),
        "providerConfig": provider_configs,
        "parameters": st.dictionaries(st.text(max_size=6), json_values, max_size=4),
        "metrics": metrics.map(lambda m: m.model_dump(by_alias=True)),
        "lastTrained": times,
        "abTest": ab_configs,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            data[key] = draw(strategy)
    try:
        return ModelConfig.model_validate(data)
    except (ValidationError, SecretInConfig):  # e.g. a drawn key that looks secret
        return ModelConfig.model_validate(
            {k: data[k] for k in ("id", "name", "version", "type", "provider")}
        )


def _changes(draw: Any) -> ConfigChanges:
    fields: dict[str, Any] = {
        "name": st.just("Renamed"),
        "description": st.text(max_size=10),
        "endpoint": st.none() | st.just("https://other.example.com"),
        "credentials": st.none() | st.just({"token": "file:/run/secrets/t"}),
        "providerConfig": st.none() | provider_configs,
        "parameters": st.none() | st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        "lastTrained": st.none() | times,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
    try:
        return ConfigChanges.model_validate({k: draw(fields[k]) for k in chosen})
    except (ValidationError, SecretInConfig):
        return ConfigChanges(description="d")


def _command(draw: Any, state: RegistryState) -> CommandBase:  # noqa: C901 - one per kind
    mid = draw(st.sampled_from(IDS))
    current = state.models.get(mid)
    actor = draw(st.sampled_from(["alice", "ci", "ml-platform"]))
    version = "1.0.0" if current is None else current.config.version
    kind = draw(st.integers(0, 15))
    if current is None or not current.live or kind == 0:
        return RegisterModel(model_id=mid, payload=_config(mid, draw, version), actor=actor)
    if kind == 1:
        return ClearRegistry(
            payload=ClearRegistryPayload(reason="reset", confirm=True), actor=actor
        )
    if kind in (2, 3):
        to = draw(st.sampled_from(list(Status)))
        reason = draw(st.none() | st.text(max_size=8))
        return ChangeStatus(
            model_id=mid, payload=ChangeStatusPayload(status=to, reason=reason), actor=actor
        )
    if kind in (4, 5):
        return RecordMetrics(
            model_id=mid, payload=RecordMetricsPayload(metrics=draw(metrics)), actor=actor
        )
    if kind == 6:
        major, minor, patch = (int(x) for x in version.split("-")[0].split(".")[:3])
        nxt = draw(
            st.sampled_from(
                [
                    f"{major}.{minor}.{patch + 1}",
                    f"{major}.{minor + 1}.0",
                    f"{major}.{minor}.{patch + 1}-rc.1",
                ]
            )
        )
        payload = ReleaseVersionPayload(
            version=nxt,
            status=draw(
                st.none() | st.sampled_from([Status.TRAINING, Status.TESTING, Status.ACTIVE])
            ),
            metrics=draw(st.none() | metrics),
            changes=_changes(draw),
        )
        return ReleaseVersion(model_id=mid, payload=payload, actor=actor)
    if kind == 7:
        changes = _changes(draw)
        if not changes.model_fields_set:
            changes = ConfigChanges(description="d")
        return UpdateConfig(model_id=mid, payload=UpdateConfigPayload(changes=changes), actor=actor)
    if kind == 8:
        start = StartABTestPayload(
            champion_model_id=draw(st.sampled_from(IDS)),
            traffic_percentage=draw(percents),
            routing=draw(st.sampled_from(["hash", "random"])),
            mode=draw(st.sampled_from(["split", "split", "shadow"])),
            guardrails=draw(st.none() | st.just(Guardrails(max_error_rate=5, min_samples=50))),
        )
        return StartABTest(model_id=mid, payload=start, actor=actor)
    if kind == 9:
        traffic = ChangeABTrafficPayload(traffic_percentage=draw(percents))
        return ChangeABTraffic(model_id=mid, payload=traffic, actor=actor)
    if kind == 10:
        return StopABTest(
            model_id=mid,
            payload=ReasonPayload(reason=draw(st.none() | st.just("done"))),
            actor=actor,
        )
    if kind == 12:
        return PromoteChallenger(model_id=mid, payload=PromotePayload(reason="better"), actor=actor)
    if kind == 13:
        return RollbackPromotion(model_id=mid, actor=actor)
    if kind in (14, 15):
        alias = draw(st.sampled_from(ALIASES))
        cls = AssignAlias if kind == 14 else RemoveAlias
        return cls(model_id=mid, payload=AliasPayload(alias=alias), actor=actor)
    return UnregisterModel(model_id=mid, payload=ReasonPayload(reason="retired"), actor=actor)


ALIASES = ["lead@production", "lead@staging"]


@st.composite
def histories(draw: Any, max_commands: int = 40) -> list[EventBase]:
    """Events the decider would write: commands drawn against the state they meet."""
    state, events = RegistryState(), []
    now = T0
    for _ in range(draw(st.integers(1, max_commands))):
        now += timedelta(seconds=1, microseconds=draw(st.sampled_from([0, 0, 1, 250_000])))
        decision = decide(_command(draw, state), state, now=now, allow_clear=True)
        if isinstance(decision, Rejection):
            continue
        for event in decision:
            state.apply_event(event)
            events.append(event)
    return events


def logged(events: Sequence[EventBase]) -> list[EventBase]:
    """The events as the log holds them (what every reader folds).

    Not always the decider's objects: ``encode`` leaves out null fields, so a change that
    clears a field (``ConfigChanges(endpoint=None)``) reads back as no change at all."""
    return [codec.decode_event(codec.encode(e)) for e in events]


def records_of(values: Sequence[tuple[bytes | None, bytes | None]]) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    return [
        ConsumerRecord(
            TOPIC, 0, i, 1_700_000_000_000 + i, 0, key, value, None, 0, 0, (("type", b"x"),)
        )
        for i, (key, value) in enumerate(values)
    ]


def event_records(events: Sequence[EventBase]) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    return records_of([(e.model_id.encode(), codec.encode(e)) for e in events])


# --------------------------------------------------------------------------- comparing folds


def view(rows: BatchRows, state: RegistryState) -> dict[str, Any]:
    """Everything a batch writes and the state it leaves, as exactly comparable values."""
    return {
        "events": rows.events,
        "status_history": rows.status_history,
        "versions": rows.versions,
        "version_metrics": rows.version_metric_rows(),
        "superseded": rows.superseded,
        "ab": (rows.ab_started, rows.ab_splits, rows.ab_updates),
        "models": rows.model_rows(),
        "errors": rows.errors,
        "dead_letters": [(r.offset, reason) for r, reason in rows.dead_letters],
        "positions": rows.positions,
        "counts": (rows.registry_revision, rows.applied, rows.records),
        "state": {mid: f.key() for mid, f in state.models.items()},
        "registry_revision": state.registry_revision,
    }


def _careful_by_design(e: EventBase) -> bool:
    """Rare events the fast check leaves to the careful path on purpose (fastcheck)."""
    if e.type in _CAREFUL_ONLY:
        return True
    if isinstance(e, ABTestStarted):
        return e.payload.mode is not None or e.payload.guardrails is not None
    return False


def fold_both(
    records: list[ConsumerRecord], cuts: Sequence[int] = ()
) -> tuple[list[Any], list[Any], int]:  # type: ignore[type-arg]
    """Fold ``records`` fast and careful, batch by batch; (fast views, careful views, careful
    records the fast run needed)."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(records)}), len(records)]
    fast_state, careful_state = RegistryState(), RegistryState()
    fast, careful, needed = [], [], 0
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        a = fold_batch(fast_state, records[lo:hi])
        b = fold_batch(careful_state, records[lo:hi], fast=False)
        needed += a.careful
        fast.append(view(a, fast_state))
        careful.append(view(b, careful_state))
    return fast, careful, needed


@hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=histories(), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_fast_fold_equals_the_careful_fold_and_the_reference(
    events: list[EventBase], cuts: list[int]
) -> None:
    records = event_records(events)
    fast, careful, needed = fold_both(records, cuts)
    assert fast == careful
    careful_kinds = [e for e in events if _careful_by_design(e)]
    assert needed == len(careful_kinds), (
        "the fast path left events the decider writes to the careful path"
    )
    state = RegistryState()
    fold_batch(state, records)
    reference = oracle.fold(logged(events))
    assert state.models.keys() == reference.keys()
    for mid, expected in reference.items():
        folded = state.models[mid]
        assert (
            folded.wire,
            folded.revision,
            folded.registered_at,
            folded.updated_at,
            folded.ab_test,
            folded.aliases,
            folded.served_by,
            folded.replaces,
        ) == expected.key(), mid
        # the wire form is the models' own normal form: it validates, and dumps to itself
        assert folded.config.wire() == folded.wire, mid


@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=histories(max_commands=30), cuts=st.lists(st.integers(0, 40), max_size=3))
def test_fast_and_careful_files_are_identical(events: list[EventBase], cuts: list[int]) -> None:
    """The same through the writer, into real SQLite files."""
    assume(events)  # an empty log writes no checkpoint: nothing to compare
    records = event_records(events)
    with TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "fast.db", Path(tmp) / "careful.db"
        asyncio.run(build(a, records, cuts))
        asyncio.run(build_careful(b, records))
        assert_same_tables(a, b)
        assert_matches_fold(a, logged(events))


async def build_careful(path: Path, records: Sequence[ConsumerRecord]) -> None:  # type: ignore[type-arg]
    from projections.writer import ProjectionWriter

    writer = ProjectionWriter(path)
    await writer.open()
    try:
        rows = fold_batch(RegistryState(), list(records), fast=False)
        await writer.write(TOPIC, rows, {})
    finally:
        await writer.close()


# --------------------------------------------------------------------------- mangled records

WEIRD: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    100.5,
    -0.0,
    2**64,
    2**70,
    1e308,
    "",
    "x" * 300,
    "env:X",
    "sk-live-0123456789abcdef",
    "1.0.0\n",
    "1.0",
    "m 1",
    "2026-02-30T00:00:00Z",
    "2026-03-01T00:00:00+01:00",
    "2026-03-01T00:00:00",
    "2026-03-01T00:00:00.1234567Z",
    "2026-03-01t00:00:00z",
    "https://user:pw@example.com",
    "hash",
    "random",
    "training",
    "unregistered",
    [],
    {},
    {"provider": "openai"},
    {"apiKey": "raw-secret"},
    {"token": "env:T", "nested": {"password": "hunter2"}},
    [1, {"secret": "s"}],
)
RENAMES = {
    "f1Score": "f1_score",
    "providerConfig": "provider_config",
    "lastTrained": "last_trained",
    "abTest": "ab_test",
    "trafficPercentage": "traffic_percentage",
    "championModelId": "champion_model_id",
    "schema_version": "schemaVersion",
    "from": "from_status",
    "to": "to_status",
    "testId": "test_id",
    "splitVersion": "split_version",
}


# The models make these up when absent (a fresh id, the current time): such a record would
# read differently each time, with or without the fast path.
NOT_DELETED = {("id",), ("occurred_at",)}


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _mangle(obj: dict[str, Any], draw: Any) -> bytes:
    path = draw(st.sampled_from(_paths(obj)))
    op = draw(st.sampled_from(["set", "set", "set", "delete", "add", "rename", "bytes"]))
    if op == "bytes":
        raw = orjson.dumps(obj)
        at = draw(st.integers(0, len(raw)))
        broken: bytes = draw(
            st.sampled_from([raw[:at], raw[:at] + b"\xff" + raw[at:], raw[:at] + b"}" + raw[at:]])
        )
        return broken
    parent: Any = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1] if path else None
    if op == "set" and path:
        parent[last] = draw(st.sampled_from(WEIRD))
    elif op == "delete" and path and isinstance(parent, dict) and path not in NOT_DELETED:
        del parent[last]
    elif op == "rename" and path and isinstance(parent, dict) and last in RENAMES:
        parent[RENAMES[last]] = parent.pop(last)
    else:
        target = parent[last] if path else obj
        if isinstance(target, dict):
            target[draw(st.sampled_from(["extra", "password", "id", "type"]))] = draw(
                st.sampled_from(WEIRD)
            )
        elif isinstance(target, list):
            target.append(draw(st.sampled_from(WEIRD)))
    return json.dumps(obj).encode()  # not orjson: this writes huge ints, NaN... as given


@hsettings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), events=histories(max_commands=15))
def test_mangled_records_get_the_careful_result(
    data: st.DataObject, events: list[EventBase]
) -> None:
    values = [(e.model_id.encode(), codec.encode(e)) for e in events]
    at = data.draw(st.integers(0, len(values) - 1 if values else 0))
    if values:
        key, value = values[at]
        mangled = _mangle(orjson.loads(value), data.draw)
        values = [*values[:at], (key, mangled), *values[at:]]  # the original follows it
    fast, careful, _ = fold_both(records_of(values))
    assert fast == careful


def test_what_the_fast_path_leaves_to_the_careful_one() -> None:
    """Examples of each kind of doubt: all decoded (or refused) by the careful path."""
    base = orjson.loads(
        codec.encode(
            decide(
                RecordMetrics(
                    model_id="m1", payload=RecordMetricsPayload(metrics=Metrics(accuracy=90))
                ),
                RegistryState(
                    {"m1": _state_after_register()}  # type: ignore[dict-item]
                ),
                now=T0,
            )[0]  # type: ignore[index]
        )
    )
    assert check(orjson.dumps(base)) is not None
    for change in (
        {"schema_version": 2},  # another version: upcast (or refused) by the codec
        {"occurred_at": "2026-03-01T01:00:00+01:00"},  # not UTC: pydantic converts it
        {"revision": "2"},  # a coercion
        {"payload": {"metrics": {"f1_score": 50}}},  # a Python name
        {"payload": {"metrics": {"accuracy": 101}}},  # out of range: refused
        {"extra": 1},  # unknown field: refused
        {"type": "ModelExploded"},  # unknown type: refused
    ):
        assert check(orjson.dumps({**base, **change})) is None, change
    assert check(b"not json") is None
    assert check(b"[]") is None


def _state_after_register() -> Any:
    state = RegistryState()
    cfg = ModelConfig(
        id="m1", name="n", version="1.0.0", type=ModelType.NLP, provider=Provider.OPENAI
    )
    (event,) = decide(RegisterModel(model_id="m1", payload=cfg), state, now=T0)  # type: ignore[misc]
    state.apply_event(event)
    return state.models["m1"]
