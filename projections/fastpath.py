"""The projector's fast path: an event's bytes -> its effect, without pydantic models.

``decode(value)`` checks a record against a strict subset of what the message models accept
and returns a ``Fact``, or ``None``. ``None`` means "not sure", never "invalid": the caller
then takes the careful path (``registry.codec`` and the domain's ``evolve``), which upcasts,
coerces, or reports the record as unreadable. What the fast path takes:

- the shapes ``registry.codec.encode`` writes: wire (camelCase) names, JSON types without
  coercion (pydantic-core's strict mode), the current ``schema_version``, UTC times;
- every constraint of the models: pydantic-core checks the declared ones (patterns,
  lengths, ranges, enums) in the same pass that parses the JSON, with the parser the
  careful path uses; the checks the models make in Python run here on the result, with the
  domain's own functions (secrets in configs, semantic versions), plus the real-date check
  of ``occurred_at``.

``evolve(state, fact)`` is ``registry.domain.rules.evolve`` on ``Folded`` states: the same
revision checks (``RevisionGap``) and the same effects, on the configs' wire form.
``tests/projections/test_fastpath.py`` checks both against the careful path, on the events
the real rules produce and on mangled ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, NotRequired, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from projections.state import CONFIG_FIELDS, ABTuple, Folded
from registry.domain.errors import SecretInConfig
from registry.domain.messages import EVENT_TYPES, REGISTRY_KEY
from registry.domain.rules import RevisionGap, ab_test_id
from registry.domain.types import (
    _SECRET_KEY,
    _SEMVER,
    MODEL_ID_PATTERN,
    ModelType,
    Provider,
    Status,
    _check_credentials,
    _check_endpoint,
    _scan_for_secrets,
)

__all__ = ["Fact", "decode", "evolve", "evolve_clear", "set_field"]


class Doubt(Exception):
    """The fast path is not sure: leave this record to the careful path."""


class Fact(NamedTuple):
    """A checked event: the envelope (``at`` as fixed-width UTC text; in the order of the
    ``events`` columns) and its effect."""

    id: str
    type: str
    model_id: str
    revision: int
    actor: str
    at: str
    correlation_id: str | None
    causation_id: str | None
    schema_version: int
    reason: str | None
    data: Any  # per type: see the ``_payload_*`` functions


# --------------------------------------------------------------------------- the shapes
#
# pydantic-core checks these in strict mode, in one pass over the JSON bytes. They carry the
# message models' constraints, with wire names only (the models also take Python names: those
# records take the careful path) and nothing the models' Python validators would change.

_FORBID = ConfigDict(extra="forbid")
_Id = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
_Reason = NotRequired[Annotated[str, Field(max_length=2000)] | None]
_Traffic = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
_Percent = NotRequired[Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None]
_Error = NotRequired[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None]
_Status = Literal["training", "testing", "active", "deprecated", "unregistered"]
_Type = Literal[
    "classification", "regression", "clustering", "nlp", "recommendation", "forecasting"
]
_Provider = Literal[
    "openai",
    "anthropic",
    "aws-sagemaker",
    "azure-ml",
    "custom",
    "scikit-learn",
    "tensorflow",
    "pytorch",
]
# ``SemVer``'s pattern with ASCII digits (Python's ``\d`` also takes other scripts' digits,
# and its ``$`` a final newline: those versions take the careful path).
_SemVer = Annotated[str, Field(pattern=_SEMVER.pattern.replace("\\d", "[0-9]"))]
# UTC only, as pydantic writes it (``Z``) or as ``+00:00``; dates are checked by ``_day``.
_AT = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|\+00:00)$"
)
# A config's datetime as pydantic writes it (kept as it comes): six fraction digits or none,
# ``Z`` for UTC, another offset as ``+HH:MM``, or none (naive). ``_time`` refuses the rest.
_WireTime = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
        r"(?:\.[0-9]{6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
    ),
]
assert set(_Status.__args__) == {s.value for s in Status}  # type: ignore[attr-defined]
assert set(_Type.__args__) == {t.value for t in ModelType}  # type: ignore[attr-defined]
assert set(_Provider.__args__) == {p.value for p in Provider}  # type: ignore[attr-defined]

_Metrics = with_config(_FORBID)(
    TypedDict(  # type: ignore[operator]  # a dict of wire names (some are keywords)
        "_Metrics",
        {
            "accuracy": _Percent,
            "precision": _Percent,
            "recall": _Percent,
            "f1Score": _Percent,
            "mse": _Error,
            "mae": _Error,
        },
    )
)
# Declared fields first, then the provider's settings in their order: pydantic's order too.
_ProviderConfig = with_config(ConfigDict(extra="allow"))(
    TypedDict(  # type: ignore[operator]  # a dict of wire names (some are keywords)
        "_ProviderConfig",
        {
            "provider": _Provider,
            "endpoint": NotRequired[str | None],
            "credentials": NotRequired[dict[str, str] | None],
        },
    )
)
_ABTest = with_config(_FORBID)(
    TypedDict(  # type: ignore[operator]  # a dict of wire names (some are keywords)
        "_ABTest",
        {
            "enabled": NotRequired[bool],
            "trafficPercentage": _Traffic,
            "championModelId": _Id,
            "routing": NotRequired[Literal["hash", "random"]],
        },
    )
)
# In ``CONFIG_FIELDS`` order: pydantic-core returns the fields in this order.
_Config = with_config(_FORBID)(
    TypedDict(  # type: ignore[operator]  # a dict of wire names (some are keywords)
        "_Config",
        {
            "id": _Id,
            "name": Annotated[str, Field(min_length=1, max_length=200)],
            "version": _SemVer,
            "type": _Type,
            "provider": _Provider,
            "description": NotRequired[Annotated[str, Field(max_length=5000)]],
            "endpoint": NotRequired[str | None],
            "credentials": NotRequired[dict[str, str] | None],
            "providerConfig": NotRequired[_ProviderConfig | None],
            "parameters": NotRequired[dict[str, Any] | None],
            "metrics": NotRequired[_Metrics | None],
            "lastTrained": NotRequired[_WireTime | None],
            "status": NotRequired[_Status],
            "abTest": NotRequired[_ABTest | None],
        },
    )
)
assert tuple(_Config.__annotations__) == CONFIG_FIELDS
_Changes = with_config(_FORBID)(
    TypedDict(  # type: ignore[operator]  # a dict of wire names (some are keywords)
        "_Changes",
        {
            "name": NotRequired[Annotated[str, Field(min_length=1, max_length=200)] | None],
            "description": NotRequired[Annotated[str, Field(max_length=5000)] | None],
            "endpoint": NotRequired[str | None],
            "credentials": NotRequired[dict[str, str] | None],
            "providerConfig": NotRequired[_ProviderConfig | None],
            "parameters": NotRequired[dict[str, Any] | None],
            "lastTrained": NotRequired[_WireTime | None],
        },
    )
)


def _payload(name: str, fields: dict[str, Any]) -> Any:
    return with_config(_FORBID)(TypedDict(name, fields))  # type: ignore[operator]


_PAYLOAD_SHAPES: dict[str, Any] = {
    "ModelRegistered": _Config,
    "ModelVersionReleased": _payload(
        "_Released",
        {
            "version": _SemVer,
            "previousVersion": _SemVer,
            "status": _Status,
            "metrics": NotRequired[_Metrics | None],
            "changes": NotRequired[_Changes],
        },
    ),
    "ModelConfigUpdated": _payload("_ConfigUpdated", {"changes": _Changes}),
    "ModelMetricsRecorded": _payload("_MetricsRecorded", {"metrics": _Metrics}),
    "ModelStatusChanged": _payload(
        "_StatusChanged", {"from": _Status, "to": _Status, "reason": _Reason}
    ),
    "ABTestStarted": _payload(
        "_ABTestStarted",
        {
            "testId": str,
            "championModelId": _Id,
            "trafficPercentage": _Traffic,
            # the payload takes any routing, but ``evolve`` builds an ``ABTestConfig``, which
            # refuses others: those take the careful path
            "routing": NotRequired[Literal["hash", "random"]],
            "splitVersion": NotRequired[int],
        },
    ),
    "ABTestTrafficChanged": _payload(
        "_ABTestTrafficChanged",
        {
            "testId": str,
            "previousPercentage": _Traffic,
            "trafficPercentage": _Traffic,
            "splitVersion": int,
        },
    ),
    "ABTestStopped": _payload("_ABTestStopped", {"testId": str, "reason": _Reason}),
    "ModelUnregistered": _payload("_ModelUnregistered", {"version": _SemVer, "reason": _Reason}),
    "RegistryCleared": _payload(
        "_RegistryCleared", {"reason": _Reason, "modelIds": NotRequired[list[str]]}
    ),
}


def _event_shape(cls: type[Any]) -> Any:
    kind = cls.model_fields["type"].default
    cleared = kind == "RegistryCleared"
    return _payload(
        f"_{kind}",
        {
            "id": Annotated[str, Field(min_length=1, max_length=128)],
            # absent means 1 (the field's default), which is current only while it is 1
            "schema_version": NotRequired[Literal[1]]
            if cls.SCHEMA_VERSION == 1
            else Literal[cls.SCHEMA_VERSION],
            # RegistryCleared's model_id is any text (it names no model)
            "model_id": NotRequired[str] if cleared else _Id,
            "occurred_at": Annotated[str, Field(pattern=_AT)],
            "actor": Annotated[str, Field(min_length=1, max_length=200)],
            "correlation_id": NotRequired[Annotated[str, Field(max_length=128)] | None],
            "causation_id": NotRequired[Annotated[str, Field(max_length=128)] | None],
            "revision": Annotated[int, Field(ge=1, lt=2**63)],  # SQLite's integers
            "type": Literal[kind],
            "payload": NotRequired[_PAYLOAD_SHAPES[kind]] if cleared else _PAYLOAD_SHAPES[kind],
        },
    )


_SHAPES: TypeAdapter[dict[str, Any]] = TypeAdapter(
    Annotated[Union[tuple(_event_shape(c) for c in EVENT_TYPES)], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
)

# --------------------------------------------------------------------------- Python checks

_DAYS: set[str] = set()
_PROVIDER_FIELDS = frozenset({"provider", "endpoint", "credentials"})


def _day(day: str) -> bool:
    """Is ``YYYY-MM-DD`` a real date (no 30 February)? Remembered: days repeat."""
    if day in _DAYS:
        return True
    try:
        datetime.fromisoformat(day)
    except ValueError:
        return False
    if len(_DAYS) > 100_000:
        _DAYS.clear()
    _DAYS.add(day)
    return True


def _secrets(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except SecretInConfig:
        raise Doubt from None  # the careful path reports it, naming the field


_INF = float("inf")


def _walk(value: Any) -> bool:  # noqa: C901 - one pass over nested JSON, kept flat
    """Check an ``Any`` value (parameters, provider settings): only finite numbers (JSON
    writers disagree about the others, so those take the careful path; raises ``Doubt``).
    Returns whether the domain's secret scan could refuse it: a string under a key that
    looks secret, at any depth (only then is that scan run, for its verdict)."""
    kind = type(value)
    suspect = False
    if kind is dict:
        for key, inner in value.items():
            t = type(inner)
            if t is str:
                if not suspect and _SECRET_KEY.search(key) is not None:
                    suspect = True
            elif t is dict or t is list or t is float or t is int:
                suspect = _walk(inner) or suspect
    elif kind is list:
        for inner in value:
            t = type(inner)
            if t is dict or t is list or t is float or t is int:
                suspect = _walk(inner) or suspect
    elif kind is float:
        if value != value or value == _INF or value == -_INF:
            raise Doubt
    elif kind is int and not -(2**63) <= value < 2**63:
        raise Doubt
    return suspect


def _scan(field: str, value: dict[str, Any]) -> None:
    """``_scan_for_secrets`` (the domain's), run only when ``_walk`` says it could refuse."""
    if _walk(value):
        _secrets(_scan_for_secrets, field, value)


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``Metrics`` in wire form: no nulls (pydantic-core gave them in field order)."""
    if None in metrics.values():
        return {k: v for k, v in metrics.items() if v is not None}
    return metrics


def _provider_config(value: dict[str, Any]) -> dict[str, Any]:
    """``ProviderConfig``'s checks; its wire form (no nulls, but nested ones)."""
    endpoint, credentials = value.get("endpoint"), value.get("credentials")
    _secrets(_check_endpoint, "providerConfig.endpoint", endpoint)
    if credentials:
        _secrets(_check_credentials, "providerConfig.credentials", credentials)
    _scan("providerConfig", {k: v for k, v in value.items() if k not in _PROVIDER_FIELDS})
    if None in value.values():
        return {k: v for k, v in value.items() if v is not None}
    return value


def _parameters(value: dict[str, Any]) -> dict[str, Any]:
    _scan("parameters", value)  # the domain scans only non-empty ones: same verdict
    return value


def _time(value: str) -> str:
    """A config datetime that pydantic would write back unchanged."""
    if ".000000" in value or value.endswith(("+00:00", "-00:00")) or not _day(value[:10]):
        raise Doubt
    return value


def _config(c: dict[str, Any]) -> dict[str, Any]:
    """``ModelConfig``'s checks made in Python; its wire form."""
    _secrets(_check_endpoint, "endpoint", c.get("endpoint"))
    credentials = c.get("credentials")
    if credentials is not None:
        _secrets(_check_credentials, "credentials", credentials)
    out = {k: v for k, v in c.items() if v is not None}
    if "providerConfig" in out:
        out["providerConfig"] = _provider_config(out["providerConfig"])
    if "parameters" in out:
        _parameters(out["parameters"])
    if "metrics" in out:
        out["metrics"] = _metrics(out["metrics"])
    if "lastTrained" in out:
        _time(out["lastTrained"])
    ab = out.get("abTest")
    if ab is not None:
        out["abTest"] = {
            "enabled": ab.get("enabled", True),
            "trafficPercentage": ab["trafficPercentage"],
            "championModelId": ab["championModelId"],
            "routing": ab.get("routing", "hash"),
        }
    if "description" not in out or "status" not in out:  # the defaults, in their places
        out.setdefault("description", "")
        out.setdefault("status", "training")
        out = {k: out[k] for k in CONFIG_FIELDS if k in out}
    return out


def _changes(c: dict[str, Any]) -> dict[str, Any]:
    """``ConfigChanges``' checks made in Python; the wire fields it sets (None: cleared)."""
    if ("name" in c and c["name"] is None) or ("description" in c and c["description"] is None):
        raise Doubt  # the domain would set a required field to None
    out = dict(c)
    if out.get("endpoint") is not None:
        _secrets(_check_endpoint, "endpoint", out["endpoint"])
    if out.get("credentials") is not None:
        _secrets(_check_credentials, "credentials", out["credentials"])
    if out.get("providerConfig") is not None:
        out["providerConfig"] = _provider_config(out["providerConfig"])
    if out.get("parameters") is not None:
        _parameters(out["parameters"])
    if out.get("lastTrained") is not None:
        _time(out["lastTrained"])
    return out


# --------------------------------------------------------------------------- payloads
# Each returns (data, reason): ``data`` is what ``evolve`` needs, ``reason`` the history's.


def _payload_registered(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    if p["id"] != model_id:
        raise Doubt  # the model's id would differ from the event's
    return _config(p), None


def _payload_release(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    metrics = p.get("metrics")
    return (
        _changes(p.get("changes", _EMPTY)),
        p["version"],
        p["status"],
        None if metrics is None else _metrics(metrics),
    ), None


def _payload_config(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return _changes(p["changes"]), None


def _payload_metrics(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return _metrics(p["metrics"]), None


def _payload_status(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return p["to"], p.get("reason")


def _payload_ab_started(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return (
        p["testId"],
        p["championModelId"],
        p["trafficPercentage"],
        p.get("routing", "hash"),
        p.get("splitVersion", 1),
    ), None


def _payload_ab_traffic(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return (p["trafficPercentage"], p["splitVersion"]), None


def _payload_reason(p: dict[str, Any], model_id: str) -> tuple[Any, str | None]:
    return None, p.get("reason")


_PAYLOADS: dict[str, Callable[[dict[str, Any], str], tuple[Any, str | None]]] = {
    "ModelRegistered": _payload_registered,
    "ModelVersionReleased": _payload_release,
    "ModelConfigUpdated": _payload_config,
    "ModelMetricsRecorded": _payload_metrics,
    "ModelStatusChanged": _payload_status,
    "ABTestStarted": _payload_ab_started,
    "ABTestTrafficChanged": _payload_ab_traffic,
    "ABTestStopped": _payload_reason,
    "ModelUnregistered": _payload_reason,
    "RegistryCleared": _payload_reason,
}
_EMPTY: dict[str, Any] = {}
_new_fact = tuple.__new__
_validate = _SHAPES.validator.validate_json  # no wrapper: ~1 us each


def decode(value: bytes | str) -> Fact | None:
    """A record's value -> a checked ``Fact``, or ``None`` when the careful path must decide."""
    try:
        obj = _validate(value, strict=True)
    except ValidationError:
        return None
    at = obj["occurred_at"]
    if at[:10] not in _DAYS and not _day(at[:10]):
        return None
    body = at[:-1] if at[-1] == "Z" else at[:-6]
    at = body + ".000000+00:00" if len(body) == 19 else body.ljust(26, "0") + "+00:00"
    kind = obj["type"]
    model_id = obj.get("model_id", REGISTRY_KEY)
    try:
        data, reason = _PAYLOADS[kind](obj.get("payload", _EMPTY), model_id)
    except Doubt:
        return None
    return _new_fact(
        Fact,
        (
            obj["id"],
            kind,
            model_id,
            obj["revision"],
            obj["actor"],
            at,
            obj.get("correlation_id"),
            obj.get("causation_id"),
            obj.get("schema_version", 1),
            reason,
            data,
        ),
    )


# --------------------------------------------------------------------------- evolve


def _replace(config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``model_copy(update=...)`` on the wire form: ``None`` drops a field, order is kept."""
    new = config.copy()
    reorder = False
    for key, value in update.items():
        if value is None:
            new.pop(key, None)
        else:
            if key not in new:
                reorder = True
            new[key] = value
    if reorder:
        new = {k: new[k] for k in CONFIG_FIELDS if k in new}
    return new


def set_field(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``config`` with one field set (a copy; the field keeps or takes its place)."""
    if key in config:
        config = config.copy()
        config[key] = value
        return config
    return _replace(config, {key: value})


def _ab_wire(ab: ABTuple) -> dict[str, Any]:
    return {"enabled": True, "trafficPercentage": ab[2], "championModelId": ab[1], "routing": ab[3]}


def _unregistered(state: Folded, at: str, revision: int) -> Folded:
    config = state.config.copy()
    config["status"] = "unregistered"
    config.pop("abTest", None)
    return Folded(config, revision, state.registered_at, at, None)


def evolve(state: Folded | None, f: Fact) -> Folded:  # noqa: C901 - the domain's, case by case
    """The model's state after ``f`` (``registry.domain.rules.evolve``, on wire values)."""
    current = state.revision if state is not None else 0
    if f.revision != current + 1:
        raise RevisionGap(f.model_id, current + 1, f.revision)
    kind, at, data = f.type, f.at, f.data
    if kind == "ModelRegistered":
        ab_cfg = data.get("abTest")
        ab: ABTuple | None = None
        if ab_cfg is not None and ab_cfg["enabled"]:
            ab = (
                ab_test_id(data["id"], f.revision),
                ab_cfg["championModelId"],
                ab_cfg["trafficPercentage"],
                ab_cfg["routing"],
                1,
                at,
            )
        return Folded(data, f.revision, at, at, ab)
    if state is None:
        raise RevisionGap(f.model_id, 1, f.revision)
    config, ab = state.config, state.ab
    if kind == "ModelMetricsRecorded":
        config = set_field(config, "metrics", data)
    elif kind == "ModelStatusChanged":
        config = set_field(config, "status", data)
    elif kind == "ModelVersionReleased":
        changes, version, status, metrics = data
        update = {**changes, "version": version, "status": status}
        if metrics is not None:
            update["metrics"] = metrics
        config = _replace(config, update)
    elif kind == "ModelConfigUpdated":
        if data:
            config = _replace(config, data)
    elif kind == "ABTestStarted":
        test_id, champion, traffic, routing, split = data
        ab = (test_id, champion, traffic, routing, split, at)
        config = _replace(config, {"abTest": _ab_wire(ab)})
    elif kind == "ABTestTrafficChanged":
        if ab is not None:
            ab = (ab[0], ab[1], data[0], ab[3], data[1], ab[5])
            config = _replace(config, {"abTest": _ab_wire(ab)})
    elif kind == "ABTestStopped":
        ab = None
        if "abTest" in config:
            config = _replace(config, {"abTest": None})
    elif kind == "ModelUnregistered":
        return _unregistered(state, at, f.revision)
    else:  # pragma: no cover - decode() only makes the kinds above
        raise AssertionError(kind)
    return Folded(config, f.revision, state.registered_at, at, ab)


def evolve_clear(models: dict[str, Folded], registry_revision: int, f: Fact) -> dict[str, Folded]:
    """``RegistryCleared``: the new states of the live models (``RegistryState.apply``)."""
    if f.revision != registry_revision + 1:
        raise RevisionGap(REGISTRY_KEY, registry_revision + 1, f.revision)
    return {
        mid: Folded(
            {**{k: v for k, v in s.config.items() if k != "abTest"}, "status": "unregistered"},
            s.revision,
            s.registered_at,
            f.at,
            None,
        )
        for mid, s in models.items()
        if s.live
    }
