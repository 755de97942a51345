"""The registry's state and the one fold of its events (docs/design.md#the-one-fold).

A model's state holds its config in **wire form**: the JSON-ready dict that
``ModelConfig.wire()`` returns (camelCase keys in field order, no null fields), with its
revision and times as fixed-width UTC text. Every reader of ``registry.events`` folds with
``RegistryState.apply`` (the decider, the projector, the prediction consumer's view, the
monitor, point-in-time queries), so there is one set of rules for what an event does:
``EFFECTS``, one function per event type, declared with the event class it handles.

A ``Fact`` is an event as the fold needs it: its envelope and its payload in wire form. It
comes from the bytes through ``registry.core.codec`` (a strict fast check, else the pydantic
models), or from a pydantic event through ``fact_of``; either way the payload is the same
dict, so the fold cannot tell them apart.

Pure: no I/O, no clock. States are immutable values; ``RegistryState`` is the one mutable
container, changed only by ``apply``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

from registry.core.errors import RevisionGap
from registry.core.messages import (
    REGISTRY_KEY,
    ABTestStarted,
    ABTestStopped,
    ABTestTrafficChanged,
    EventBase,
    ModelConfigUpdated,
    ModelMetricsRecorded,
    ModelStatusChanged,
    ModelUnregistered,
    ModelVersionReleased,
)
from registry.core.types import ModelConfig, ModelType, Provider, Status

__all__ = [
    "CONFIG_FIELDS",
    "EFFECTS",
    "ActiveABTest",
    "Change",
    "Fact",
    "ModelState",
    "RegistryState",
    "Wire",
    "ab_test_id",
    "apply_changes",
    "dumps",
    "evolve",
    "fact_of",
    "iso",
    "iso_text",
    "loads",
]

Wire = dict[str, Any]
"""A JSON-ready mapping with wire (camelCase) names."""

CONFIG_FIELDS: tuple[str, ...] = tuple(
    f.alias or name for name, f in ModelConfig.model_fields.items()
)
"""``ModelConfig``'s wire names, in field order (the order of its JSON)."""


# --------------------------------------------------------------------------- text helpers


def iso(value: datetime | None) -> str | None:
    """Fixed-width UTC ISO-8601 text (microseconds, ``+00:00``): text order is time order."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # envelopes are normalised to UTC already: skip the conversion
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


_ISO_TEXT: dict[str, str] = {}


def iso_text(wire: str) -> str:
    """``iso`` of a datetime given in its wire form (e.g. a config's ``lastTrained``)."""
    text = _ISO_TEXT.get(wire)
    if text is None:
        if len(_ISO_TEXT) > 10_000:
            _ISO_TEXT.clear()
        text = _ISO_TEXT[wire] = iso(datetime.fromisoformat(wire)) or ""
    return text


def dumps(value: Any) -> str:
    """Compact JSON text, as pydantic's ``model_dump_json`` writes it for wire values.

    orjson cannot write integers beyond 64 bits or lone surrogates (a config may hold
    either in ``parameters``); those rare values take the standard library, which is just
    as deterministic."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def loads(text: str | bytes) -> Any:
    """The inverse of ``dumps``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# --------------------------------------------------------------------------- values


class Fact(NamedTuple):
    """A checked event: its envelope (``at`` as fixed-width UTC text; the first nine fields in
    the order of the projection's ``events`` columns) and its payload in wire form."""

    id: str
    type: str
    model_id: str
    revision: int
    actor: str
    at: str
    correlation_id: str | None
    causation_id: str | None
    schema_version: int
    payload: Wire
    prev: str | None = None
    """The hash chain's link to the previous event of the partition (registry.core.chain)."""

    @property
    def reason(self) -> str | None:
        """The reason the event gives, if its type carries one."""
        reason = self.payload.get("reason")
        return reason if isinstance(reason, str) else None


def fact_of(event: EventBase) -> Fact:
    """The fact of a pydantic event (its payload dumped to wire form, as the codec writes it)."""
    payload = event.model_dump(mode="json", by_alias=True, exclude_none=True).get("payload", {})
    return Fact(
        event.id,
        event.type,
        event.model_id,
        event.revision,
        event.actor,
        iso(event.occurred_at) or "",
        event.correlation_id,
        event.causation_id,
        event.schema_version,
        payload,
        event.prev,
    )


class ActiveABTest(NamedTuple):
    """A running champion/challenger test, held by the challenger."""

    test_id: str
    champion_model_id: str
    traffic_percentage: float
    routing: str
    split_version: int
    started_at: str  # fixed-width UTC text


class ModelState:
    """One model's state: its config in wire form, its revision, times and running A/B test.

    Immutable (``Final``: the type checker refuses an assignment; no runtime guard, which
    would cost the fold about a microsecond per event), and so is ``wire``: an effect
    copies it. ``config`` (the pydantic ``ModelConfig``) is validated from the wire form the
    first time it is asked for and kept; the fold itself never needs it.
    """

    __slots__ = ("wire", "revision", "registered_at", "updated_at", "ab_test", "_config")

    wire: Final[Wire]
    revision: Final[int]
    registered_at: Final[str]
    updated_at: Final[str]
    ab_test: Final[ActiveABTest | None]
    _config: ModelConfig | None

    def __init__(
        self,
        wire: Wire,
        revision: int,
        registered_at: str,
        updated_at: str,
        ab_test: ActiveABTest | None = None,
    ) -> None:
        self.wire = wire
        self.revision = revision
        self.registered_at = registered_at
        self.updated_at = updated_at
        self.ab_test = ab_test
        self._config = None

    # ------------------------------------------------------------ what it holds

    @property
    def config(self) -> ModelConfig:
        """The config as the spec's ``ModelConfig`` (status included)."""
        cfg = self._config
        if cfg is None:
            cfg = self._config = ModelConfig.model_validate(self.wire)
        return cfg

    @property
    def model_id(self) -> str:
        return str(self.wire["id"])

    @property
    def status(self) -> Status:
        return Status(self.wire["status"])

    @property
    def version(self) -> str:
        return str(self.wire["version"])

    @property
    def type(self) -> ModelType:
        return ModelType(self.wire["type"])

    @property
    def provider(self) -> Provider:
        return Provider(self.wire["provider"])

    @property
    def metrics(self) -> dict[str, float] | None:
        metrics: dict[str, float] | None = self.wire.get("metrics")
        return metrics

    @property
    def live(self) -> bool:
        """Registered and not unregistered."""
        return bool(self.wire["status"] != "unregistered")

    @property
    def serves(self) -> bool:
        """Only active models serve predictions."""
        return bool(self.wire["status"] == "active")

    def config_text(self) -> str:
        """The config's JSON (what the projection's ``config`` columns hold)."""
        return dumps(self.wire)

    def metrics_text(self) -> str | None:
        metrics = self.wire.get("metrics")
        return None if metrics is None else dumps(metrics)

    # ------------------------------------------------------------ comparison

    def key(self) -> tuple[Any, ...]:
        """Everything the state holds, as comparable values (JSON as text: 1 is not 1.0)."""
        return (
            self.config_text(),
            self.revision,
            self.registered_at,
            self.updated_at,
            self.ab_test,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelState) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return (
            f"ModelState({self.model_id!r}, version={self.version!r}, "
            f"status={self.wire['status']!r}, revision={self.revision})"
        )


Change = tuple[ModelState | None, ModelState]
"""(before, after) of one model an event changed."""


# --------------------------------------------------------------------------- the effects


def ab_test_id(challenger_id: str, revision: int) -> str:
    """The id of the test started by the challenger's event at ``revision``."""
    return f"ab:{challenger_id}:{revision}"


def _replace(config: Wire, update: Wire) -> Wire:
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


def apply_changes(config: Wire, changes: Wire) -> Wire:
    """``config`` with the fields of a ``ConfigChanges`` (wire form) set."""
    return _replace(config, changes) if changes else config


def _ab_wire(ab: ActiveABTest) -> Wire:
    return {
        "enabled": True,
        "trafficPercentage": ab.traffic_percentage,
        "championModelId": ab.champion_model_id,
        "routing": ab.routing,
    }


Effect = Callable[[ModelState, Fact], ModelState]
EFFECTS: dict[str, Effect] = {}
"""What each event type does to its model (``ModelRegistered`` aside: it makes the model)."""


def _effect(event: type[EventBase]) -> Callable[[Effect], Effect]:
    def register(fn: Effect) -> Effect:
        EFFECTS[event.TYPE] = fn
        return fn

    return register


def _registered(f: Fact) -> ModelState:
    config = f.payload
    ab_cfg = config.get("abTest")
    ab = None
    if ab_cfg is not None and ab_cfg.get("enabled", True):
        ab = ActiveABTest(
            ab_test_id(config["id"], f.revision),
            ab_cfg["championModelId"],
            ab_cfg["trafficPercentage"],
            ab_cfg.get("routing", "hash"),
            1,
            f.at,
        )
    return ModelState(config, f.revision, f.at, f.at, ab)


@_effect(ModelVersionReleased)
def _released(s: ModelState, f: Fact) -> ModelState:
    p = f.payload
    update = {**p.get("changes", {}), "version": p["version"], "status": p["status"]}
    metrics = p.get("metrics")
    if metrics is not None:
        update["metrics"] = metrics
    return ModelState(_replace(s.wire, update), f.revision, s.registered_at, f.at, s.ab_test)


def _set_field(config: Wire, key: str, value: Any) -> Wire:
    """``config`` with one field set (a copy; the field keeps or takes its place)."""
    if key in config:
        config = config.copy()
        config[key] = value
        return config
    return _replace(config, {key: value})


@_effect(ModelStatusChanged)
def _status_changed(s: ModelState, f: Fact) -> ModelState:
    wire = s.wire.copy()  # the status is always there: it keeps its place
    wire["status"] = f.payload["to"]
    return ModelState(wire, f.revision, s.registered_at, f.at, s.ab_test)


@_effect(ModelMetricsRecorded)
def _metrics_recorded(s: ModelState, f: Fact) -> ModelState:
    return ModelState(
        _set_field(s.wire, "metrics", f.payload["metrics"]),
        f.revision,
        s.registered_at,
        f.at,
        s.ab_test,
    )


@_effect(ModelConfigUpdated)
def _config_updated(s: ModelState, f: Fact) -> ModelState:
    wire = apply_changes(s.wire, f.payload.get("changes", {}))
    return ModelState(wire, f.revision, s.registered_at, f.at, s.ab_test)


@_effect(ABTestStarted)
def _ab_started(s: ModelState, f: Fact) -> ModelState:
    p = f.payload
    ab = ActiveABTest(
        p["testId"],
        p["championModelId"],
        p["trafficPercentage"],
        p.get("routing", "hash"),
        p.get("splitVersion", 1),
        f.at,
    )
    return ModelState(
        _replace(s.wire, {"abTest": _ab_wire(ab)}), f.revision, s.registered_at, f.at, ab
    )


@_effect(ABTestTrafficChanged)
def _ab_traffic(s: ModelState, f: Fact) -> ModelState:
    ab = s.ab_test
    if ab is None:  # nothing runs: the split of no test changes nothing but the revision
        return ModelState(s.wire, f.revision, s.registered_at, f.at, None)
    ab = ab._replace(
        traffic_percentage=f.payload["trafficPercentage"], split_version=f.payload["splitVersion"]
    )
    return ModelState(
        _replace(s.wire, {"abTest": _ab_wire(ab)}), f.revision, s.registered_at, f.at, ab
    )


@_effect(ABTestStopped)
def _ab_stopped(s: ModelState, f: Fact) -> ModelState:
    wire = _replace(s.wire, {"abTest": None}) if "abTest" in s.wire else s.wire
    return ModelState(wire, f.revision, s.registered_at, f.at, None)


def _unregistered(s: ModelState, at: str, revision: int) -> ModelState:
    wire = s.wire.copy()
    wire["status"] = "unregistered"
    wire.pop("abTest", None)
    return ModelState(wire, revision, s.registered_at, at, None)


@_effect(ModelUnregistered)
def _model_unregistered(s: ModelState, f: Fact) -> ModelState:
    return _unregistered(s, f.at, f.revision)


def evolve(state: ModelState | None, f: Fact) -> ModelState:
    """The model's state after ``f``. Pure; raises ``RevisionGap`` on a sequence break."""
    current = state.revision if state is not None else 0
    if f.revision != current + 1:
        raise RevisionGap(f.model_id, current + 1, f.revision)
    if f.type == "ModelRegistered":
        return _registered(f)
    if state is None:  # a non-registration event for an unknown model: the log is broken here
        raise RevisionGap(f.model_id, 1, f.revision)
    return EFFECTS[f.type](state, f)


_EFFECT = EFFECTS.get

# --------------------------------------------------------------------------- the registry


@dataclass(slots=True)
class RegistryState:
    """The models a reader holds, folded from events; ``apply`` is the one way in."""

    models: dict[str, ModelState] = field(default_factory=dict)
    registry_revision: int = 0

    def revision_of(self, model_id: str) -> int:
        if model_id == REGISTRY_KEY:
            return self.registry_revision
        state = self.models.get(model_id)
        return state.revision if state else 0

    def apply(self, f: Fact) -> list[Change]:
        """Fold one event in; returns what it changed, (before, after) per model.

        Raises ``RevisionGap`` (and changes nothing) if it is not its model's next event.
        """
        models = self.models
        current = models.get(f.model_id)
        effect = _EFFECT(f.type)
        if effect is not None and current is not None and f.revision == current.revision + 1:
            new = effect(current, f)  # the common case: evolve's checks, inlined
        elif f.type == "RegistryCleared":
            return self._cleared(f)
        else:
            new = evolve(current, f)
        models[f.model_id] = new
        return [(current, new)]

    def _cleared(self, f: Fact) -> list[Change]:
        if f.revision != self.registry_revision + 1:
            raise RevisionGap(REGISTRY_KEY, self.registry_revision + 1, f.revision)
        self.registry_revision = f.revision
        changes: list[Change] = []
        for model_id in sorted(self.models):
            before = self.models[model_id]
            if before.live:
                after = _unregistered(before, f.at, before.revision)
                self.models[model_id] = after
                changes.append((before, after))
        return changes

    def apply_event(self, event: EventBase) -> list[Change]:
        """``apply`` for a pydantic event (the decider's own, tests and tools)."""
        return self.apply(fact_of(event))

    def challenger_of(self, champion_id: str) -> ModelState | None:
        """The live model running an A/B test against ``champion_id``, if any."""
        for state in self.models.values():
            if state.ab_test is not None and state.ab_test.champion_model_id == champion_id:
                return state
        return None
