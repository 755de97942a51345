"""The strict fast check of registry events: bytes -> a ``Fact``, without pydantic models.

``check(value)`` accepts a record only when it is sure the message models would accept it,
and returns its ``Fact`` (the envelope, and the payload in the wire form ``fact_of`` would
give), or ``None``. ``None`` means "not sure", never "invalid": the caller then takes the
careful path (``registry.core.codec``), which upcasts, coerces, or reports the record as
unreadable. What the fast check takes:

- the shapes ``registry.core.codec.encode`` writes: wire (camelCase) names, JSON types
  without coercion (pydantic-core's strict mode), the current ``schema_version``, UTC times;
- every constraint of the models: pydantic-core checks the declared ones (patterns,
  lengths, ranges, enums) in the same pass that parses the JSON, with the parser the
  careful path uses; the checks the models make in Python run here on the result, with the
  core's own functions (secrets in configs, semantic versions), plus the real-date check
  of ``occurred_at``.

Both paths feed the same fold (``registry.core.state.evolve``); the tests hold the fast
check to the careful path on the events the real rules produce and on mangled ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from registry.core.errors import SecretInConfig
from registry.core.messages import EVENTS, REGISTRY_KEY
from registry.core.state import CONFIG_FIELDS, Fact
from registry.core.types import (
    MODEL_ID_PATTERN,
    SECRET_KEY,
    SEMVER,
    ModelType,
    Provider,
    Routing,
    Status,
    check_credentials,
    check_endpoint,
    scan_for_secrets,
)

__all__ = ["check"]


class Doubt(Exception):
    """The fast check is not sure: leave this record to the careful path."""


# --------------------------------------------------------------------------- the shapes
#
# pydantic-core checks these in strict mode, in one pass over the JSON bytes. They carry the
# message models' constraints, with wire names only (the models also take Python names: those
# records take the careful path) and nothing the models' Python validators would change.

_FORBID = ConfigDict(extra="forbid", strict=True)
_Id = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
_Reason = NotRequired[Annotated[str, Field(max_length=2000)] | None]
_Traffic = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
_Percent = NotRequired[Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None]
_Error = NotRequired[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None]
# The enums' values, derived (a Literal of a tuple is a Literal of its members).
_Status: Any = Literal[tuple(s.value for s in Status)]
_Type: Any = Literal[tuple(t.value for t in ModelType)]
_Provider: Any = Literal[tuple(p.value for p in Provider)]
# ``SemVer``'s pattern with ASCII digits (Python's ``\d`` also takes other scripts' digits,
# and its ``$`` a final newline: those versions take the careful path).
_SemVer = Annotated[str, Field(pattern=SEMVER.pattern.replace("\\d", "[0-9]"))]
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
_ProviderConfig = with_config(ConfigDict(extra="allow", strict=True))(
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
            "routing": NotRequired[Routing],
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
        {  # null is no value here: the models refuse it (clearing a field is not supported)
            "name": NotRequired[Annotated[str, Field(min_length=1, max_length=200)]],
            "description": NotRequired[Annotated[str, Field(max_length=5000)]],
            "endpoint": NotRequired[str],
            "credentials": NotRequired[dict[str, str]],
            "providerConfig": NotRequired[_ProviderConfig],
            "parameters": NotRequired[dict[str, Any]],
            "lastTrained": NotRequired[_WireTime],
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
            "resetsMetrics": NotRequired[bool],
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
            "routing": NotRequired[Routing],
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
            "reason": _Reason,
        },
    ),
    "ABTestStopped": _payload("_ABTestStopped", {"testId": str, "reason": _Reason}),
    "ModelUnregistered": _payload("_ModelUnregistered", {"version": _SemVer, "reason": _Reason}),
    "RegistryCleared": _payload(
        "_RegistryCleared", {"reason": _Reason, "modelIds": NotRequired[list[str]]}
    ),
}
# Rare events (a promotion, an alias moved, a test with a mode or guardrails, which the shapes
# above forbid) always take the careful path: the fast check knows no shape of theirs.
_CAREFUL_ONLY = frozenset(EVENTS) - frozenset(_PAYLOAD_SHAPES)
for _kind in _CAREFUL_ONLY:
    _PAYLOAD_SHAPES[_kind] = dict[str, Any]


_DIGEST = r"^[0-9a-f]{64}$"


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
            "signed_by": NotRequired[Annotated[str, Field(max_length=200)] | None],
            "signature": NotRequired[Annotated[str, Field(max_length=200)] | None],
            "command_digest": NotRequired[Annotated[str, Field(pattern=_DIGEST)] | None],
            "prev": NotRequired[Annotated[str, Field(pattern=_DIGEST)] | None],
            "type": Literal[kind],
            "payload": NotRequired[_PAYLOAD_SHAPES[kind]] if cleared else _PAYLOAD_SHAPES[kind],
        },
    )


_SHAPES: TypeAdapter[dict[str, Any]] = TypeAdapter(
    Annotated[Union[tuple(_event_shape(c) for c in EVENTS.values())], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
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
    Returns whether the core's secret scan could refuse it: a string under a key that
    looks secret, at any depth (only then is that scan run, for its verdict)."""
    kind = type(value)
    suspect = False
    if kind is dict:
        for key, inner in value.items():
            t = type(inner)
            if t is str:
                if not suspect and SECRET_KEY.search(key) is not None:
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
    """``scan_for_secrets`` (the core's), run only when ``_walk`` says it could refuse."""
    if _walk(value):
        _secrets(scan_for_secrets, field, value)


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``Metrics`` in wire form: no nulls (pydantic-core gave them in field order)."""
    if None in metrics.values():
        return {k: v for k, v in metrics.items() if v is not None}
    return metrics


def _provider_config(value: dict[str, Any]) -> dict[str, Any]:
    """``ProviderConfig``'s checks; its wire form (no nulls, but nested ones)."""
    endpoint, credentials = value.get("endpoint"), value.get("credentials")
    _secrets(check_endpoint, "providerConfig.endpoint", endpoint)
    if credentials:
        _secrets(check_credentials, "providerConfig.credentials", credentials)
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
    _secrets(check_endpoint, "endpoint", c.get("endpoint"))
    credentials = c.get("credentials")
    if credentials is not None:
        _secrets(check_credentials, "credentials", credentials)
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
    """``ConfigChanges``' checks made in Python; the wire fields it sets."""
    out = dict(c)
    if "endpoint" in out:
        _secrets(check_endpoint, "endpoint", out["endpoint"])
    if "credentials" in out:
        _secrets(check_credentials, "credentials", out["credentials"])
    if "providerConfig" in out:
        out["providerConfig"] = _provider_config(out["providerConfig"])
    if "parameters" in out:
        _parameters(out["parameters"])
    if "lastTrained" in out:
        _time(out["lastTrained"])
    return out


# --------------------------------------------------------------------------- payloads
# Each returns the payload in the wire form ``fact_of`` gives for the same event.


def _payload_registered(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    if p["id"] != model_id:
        raise Doubt  # the model's id would differ from the event's
    return _config(p)


def _payload_release(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    out = dict(p)
    metrics = p.get("metrics")
    if metrics is None:
        out.pop("metrics", None)
    else:
        out["metrics"] = _metrics(metrics)
    out["changes"] = _changes(p.get("changes", _EMPTY))
    return out


def _payload_config(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    return {"changes": _changes(p["changes"])}


def _payload_metrics(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    metrics = p["metrics"]
    wire = _metrics(metrics)
    return p if wire is metrics else {"metrics": wire}


def _payload_ab_started(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    return {"routing": "hash", "splitVersion": 1, **p}


def _payload_careful(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    raise Doubt


def _payload_plain(p: dict[str, Any], model_id: str) -> dict[str, Any]:
    if p.get("reason", "") is None:
        return {k: v for k, v in p.items() if v is not None}
    return p


_SPECIAL: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "ModelRegistered": _payload_registered,
    "ModelVersionReleased": _payload_release,
    "ModelConfigUpdated": _payload_config,
    "ModelMetricsRecorded": _payload_metrics,
    "ABTestStarted": _payload_ab_started,
}
_SPECIAL.update(dict.fromkeys(_CAREFUL_ONLY, _payload_careful))
_PAYLOADS = {kind: _SPECIAL.get(kind, _payload_plain) for kind in EVENTS}
_EMPTY: dict[str, Any] = {}
_new_fact = tuple.__new__
_validate = _SHAPES.validator.validate_json  # no wrapper: ~1 us each


def check(value: bytes | str) -> Fact | None:
    """A record's value -> its checked ``Fact``, or ``None`` when the careful path must decide."""
    try:
        obj = _validate(value)
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
        payload = _PAYLOADS[kind](obj.get("payload", _EMPTY), model_id)
    except Doubt:
        return None
    return _new_fact(  # a NamedTuple built without its __new__ (no Python-level call)
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
            payload,
            obj.get("prev"),
        ),
    )
