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
    AliasAssigned,
    AliasRemoved,
    ChallengerPromoted,
    EventBase,
    ModelConfigUpdated,
    ModelMetricsRecorded,
    ModelStatusChanged,
    ModelUnregistered,
    ModelVersionReleased,
    PromotionRolledBack,
)
from registry.core.types import ModelConfig, ModelType, Provider, Status

__all__ = [
    "CONFIG_FIELDS",
    "CROSS_EFFECTS",
    "EFFECTS",
    "MAX_FORWARDS",
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
    mode: str = "split"
    """``split`` or ``shadow`` (registry.core.types.ABMode)."""
    guardrails: str | None = None
    """The test's guardrails as wire JSON text (hashable), if any."""

    @property
    def shadow(self) -> bool:
        return self.mode == "shadow"

    def guardrails_wire(self) -> Wire | None:
        return None if self.guardrails is None else dict(loads(self.guardrails))


class ModelState:
    """One model's state: its config in wire form, its revision, times and running A/B test.

    Immutable (``Final``: the type checker refuses an assignment; no runtime guard, which
    would cost the fold about a microsecond per event), and so is ``wire``: an effect
    copies it. ``config`` (the pydantic ``ModelConfig``) is validated from the wire form the
    first time it is asked for and kept; the fold itself never needs it.
    """

    __slots__ = (
        "wire",
        "revision",
        "registered_at",
        "updated_at",
        "ab_test",
        "aliases",
        "served_by",
        "replaces",
        "_config",
    )

    wire: Final[Wire]
    revision: Final[int]
    registered_at: Final[str]
    updated_at: Final[str]
    ab_test: Final[ActiveABTest | None]
    aliases: Final[tuple[str, ...]]
    """The aliases that name this model (sorted)."""
    served_by: Final[str | None]
    """The model that serves what is addressed to this one (set when it was promoted over)."""
    replaces: Final[str | None]
    """The champion this model was promoted over (what a rollback restores)."""
    _config: ModelConfig | None

    def __init__(
        self,
        wire: Wire,
        revision: int,
        registered_at: str,
        updated_at: str,
        ab_test: ActiveABTest | None = None,
        aliases: tuple[str, ...] = (),
        served_by: str | None = None,
        replaces: str | None = None,
    ) -> None:
        self.wire = wire
        self.revision = revision
        self.registered_at = registered_at
        self.updated_at = updated_at
        self.ab_test = ab_test
        self.aliases = aliases
        self.served_by = served_by
        self.replaces = replaces
        self._config = None

    def next(self, wire: Wire, revision: int, at: str, ab_test: ActiveABTest | None) -> ModelState:
        """The state after an event of this model (aliases and promotion links carried)."""
        return ModelState(
            wire,
            revision,
            self.registered_at,
            at,
            ab_test,
            self.aliases,
            self.served_by,
            self.replaces,
        )

    def relinked(
        self,
        *,
        wire: Wire | None = None,
        at: str | None = None,
        aliases: tuple[str, ...] | None = None,
        served_by: str | None | bool = False,
        replaces: str | None | bool = False,
        ab_test: ActiveABTest | None | bool = False,
    ) -> ModelState:
        """A copy with some of its fields changed (``False``: keep)."""
        return ModelState(
            self.wire if wire is None else wire,
            self.revision,
            self.registered_at,
            self.updated_at if at is None else at,
            self.ab_test if ab_test is False else ab_test,  # type: ignore[arg-type]
            self.aliases if aliases is None else aliases,
            self.served_by if served_by is False else served_by,  # type: ignore[arg-type]
            self.replaces if replaces is False else replaces,  # type: ignore[arg-type]
        )

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
            self.aliases,
            self.served_by,
            self.replaces,
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
    wire: Wire = {
        "enabled": True,
        "trafficPercentage": ab.traffic_percentage,
        "championModelId": ab.champion_model_id,
        "routing": ab.routing,
    }
    if ab.mode != "split":
        wire["mode"] = ab.mode
    if ab.guardrails is not None:
        wire["guardrails"] = loads(ab.guardrails)
    return wire


Effect = Callable[[ModelState, Fact], ModelState]
EFFECTS: dict[str, Effect] = {}
"""What each event type does to its model (``ModelRegistered`` aside: it makes the model)."""


def _effect(event: type[EventBase]) -> Callable[[Effect], Effect]:
    def register(fn: Effect) -> Effect:
        EFFECTS[event.TYPE] = fn
        return fn

    return register


def _guardrails_text(value: Any) -> str | None:
    return None if value is None else dumps(value)


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
            ab_cfg.get("mode") or "split",
            _guardrails_text(ab_cfg.get("guardrails")),
        )
    return ModelState(config, f.revision, f.at, f.at, ab)


@_effect(ModelVersionReleased)
def _released(s: ModelState, f: Fact) -> ModelState:
    p = f.payload
    update = {**p.get("changes", {}), "version": p["version"], "status": p["status"]}
    metrics = p.get("metrics")
    if metrics is not None:
        update["metrics"] = metrics
    elif p.get("resetsMetrics"):
        update["metrics"] = None  # the previous version's metrics stay on that version
    return s.next(_replace(s.wire, update), f.revision, f.at, s.ab_test)


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
    return s.next(wire, f.revision, f.at, s.ab_test)


@_effect(ModelMetricsRecorded)
def _metrics_recorded(s: ModelState, f: Fact) -> ModelState:
    return s.next(_set_field(s.wire, "metrics", f.payload["metrics"]), f.revision, f.at, s.ab_test)


@_effect(ModelConfigUpdated)
def _config_updated(s: ModelState, f: Fact) -> ModelState:
    wire = apply_changes(s.wire, f.payload.get("changes", {}))
    return s.next(wire, f.revision, f.at, s.ab_test)


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
        p.get("mode") or "split",
        _guardrails_text(p.get("guardrails")),
    )
    return s.next(_replace(s.wire, {"abTest": _ab_wire(ab)}), f.revision, f.at, ab)


@_effect(ABTestTrafficChanged)
def _ab_traffic(s: ModelState, f: Fact) -> ModelState:
    ab = s.ab_test
    if ab is None:  # nothing runs: the split of no test changes nothing but the revision
        return s.next(s.wire, f.revision, f.at, None)
    ab = ab._replace(
        traffic_percentage=f.payload["trafficPercentage"], split_version=f.payload["splitVersion"]
    )
    return s.next(_replace(s.wire, {"abTest": _ab_wire(ab)}), f.revision, f.at, ab)


def _without_test(s: ModelState) -> Wire:
    return _replace(s.wire, {"abTest": None}) if "abTest" in s.wire else s.wire


@_effect(ABTestStopped)
def _ab_stopped(s: ModelState, f: Fact) -> ModelState:
    return s.next(_without_test(s), f.revision, f.at, None)


def _unregistered(s: ModelState, at: str, revision: int) -> ModelState:
    wire = s.wire.copy()
    wire["status"] = "unregistered"
    wire.pop("abTest", None)
    return ModelState(wire, revision, s.registered_at, at, None, (), None, None)


@_effect(ModelUnregistered)
def _model_unregistered(s: ModelState, f: Fact) -> ModelState:
    return _unregistered(s, f.at, f.revision)


# Events that change other models besides their own (an alias moves, a promotion forwards
# the champion): ``RegistryState.apply`` runs them. The other models' revisions do not move
# (a revision counts a model's own events); their ``updated_at`` does.
CrossEffect = Callable[["RegistryState", ModelState, Fact], list[Change]]
CROSS_EFFECTS: dict[str, CrossEffect] = {}


def _cross(event: type[EventBase]) -> Callable[[CrossEffect], CrossEffect]:
    def register(fn: CrossEffect) -> CrossEffect:
        CROSS_EFFECTS[event.TYPE] = fn
        return fn

    return register


def _with_status(wire: Wire, status: str) -> Wire:
    wire = wire.copy()
    wire["status"] = status
    return wire


@_cross(AliasAssigned)
def _alias_assigned(reg: RegistryState, s: ModelState, f: Fact) -> list[Change]:
    alias = f.payload["alias"]
    changes: list[Change] = []
    holder_id = reg.aliases.get(alias)
    holder = reg.models.get(holder_id) if holder_id is not None else None
    if holder is not None and holder_id != s.model_id:
        after = holder.relinked(at=f.at, aliases=tuple(a for a in holder.aliases if a != alias))
        changes.append(reg._put(holder, after))
    new = s.next(s.wire, f.revision, f.at, s.ab_test).relinked(
        aliases=tuple(sorted({*s.aliases, alias}))
    )
    changes.append(reg._put(s, new))
    reg.aliases[alias] = s.model_id
    return changes


@_cross(AliasRemoved)
def _alias_removed(reg: RegistryState, s: ModelState, f: Fact) -> list[Change]:
    alias = f.payload["alias"]
    new = s.next(s.wire, f.revision, f.at, s.ab_test).relinked(
        aliases=tuple(a for a in s.aliases if a != alias)
    )
    if reg.aliases.get(alias) == s.model_id:
        del reg.aliases[alias]
    return [reg._put(s, new)]


def _move_aliases(reg: RegistryState, aliases: list[str], to: str) -> None:
    for alias in aliases:
        reg.aliases[alias] = to


@_cross(ChallengerPromoted)
def _promoted(reg: RegistryState, s: ModelState, f: Fact) -> list[Change]:
    p = f.payload
    champion = reg.models.get(p["championModelId"])
    if champion is None:  # not in this reader's view (``evolve`` alone): its own part only
        new = s.next(_without_test(s), f.revision, f.at, None)
        return [reg._put(s, new.relinked(served_by=None, replaces=p["championModelId"]))]
    moved = [a for a in champion.aliases if a in p.get("aliases", champion.aliases)]
    old = champion.relinked(
        wire=_with_status(champion.wire, "deprecated"),
        at=f.at,
        aliases=tuple(a for a in champion.aliases if a not in moved),
        served_by=s.model_id,
    )
    new = s.next(_without_test(s), f.revision, f.at, None).relinked(
        aliases=tuple(sorted({*s.aliases, *moved})), served_by=None, replaces=champion.model_id
    )
    _move_aliases(reg, moved, s.model_id)
    return [reg._put(champion, old), reg._put(s, new)]


@_cross(PromotionRolledBack)
def _rolled_back(reg: RegistryState, s: ModelState, f: Fact) -> list[Change]:
    p = f.payload
    restored = reg.models.get(p["restoredModelId"])
    if restored is None:  # not in this reader's view (``evolve`` alone): its own part only
        new = s.next(_with_status(s.wire, "deprecated"), f.revision, f.at, None)
        return [reg._put(s, new.relinked(served_by=p["restoredModelId"], replaces=None))]
    moved = [a for a in s.aliases if a in p.get("aliases", ())]
    back = restored.relinked(
        wire=_with_status(restored.wire, "active"),
        at=f.at,
        aliases=tuple(sorted({*restored.aliases, *moved})),
        served_by=None,
    )
    new = s.next(_with_status(s.wire, "deprecated"), f.revision, f.at, None).relinked(
        aliases=tuple(a for a in s.aliases if a not in moved),
        served_by=restored.model_id,
        replaces=None,
    )
    _move_aliases(reg, moved, restored.model_id)
    return [reg._put(restored, back), reg._put(s, new)]


def evolve(state: ModelState | None, f: Fact) -> ModelState:
    """The model's state after ``f``. Pure; raises ``RevisionGap`` on a sequence break.

    For an event that also changes other models (``CROSS_EFFECTS``) this is its own model's
    part only; ``RegistryState.apply`` does the whole."""
    current = state.revision if state is not None else 0
    if f.revision != current + 1:
        raise RevisionGap(f.model_id, current + 1, f.revision)
    if f.type == "ModelRegistered":
        return _registered(f)
    if state is None:  # a non-registration event for an unknown model: the log is broken here
        raise RevisionGap(f.model_id, 1, f.revision)
    cross = CROSS_EFFECTS.get(f.type)
    if cross is not None:  # its own model's part: the others are not known here
        scratch = RegistryState({state.model_id: state})
        scratch.reindex()
        return cross(scratch, state, f)[-1][1]
    return EFFECTS[f.type](state, f)


_EFFECT = EFFECTS.get
_CROSS = CROSS_EFFECTS.get

# --------------------------------------------------------------------------- the registry


@dataclass(slots=True)
class RegistryState:
    """The models a reader holds, folded from events; ``apply`` is the one way in."""

    models: dict[str, ModelState] = field(default_factory=dict)
    registry_revision: int = 0
    aliases: dict[str, str] = field(default_factory=dict)
    """alias -> the id of the model it names (kept by ``apply``; ``reindex`` after a load)."""

    def reindex(self) -> None:
        """Rebuild ``aliases`` from the models (after loading them from storage)."""
        self.aliases = {a: mid for mid, s in self.models.items() for a in s.aliases}

    def revision_of(self, model_id: str) -> int:
        if model_id == REGISTRY_KEY:
            return self.registry_revision
        state = self.models.get(model_id)
        return state.revision if state else 0

    def _put(self, before: ModelState, after: ModelState) -> Change:
        self.models[after.model_id] = after
        return (before, after)

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
            cross = _CROSS(f.type)
            if cross is not None and current is not None and f.revision == current.revision + 1:
                return cross(self, current, f)
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
        self.aliases.clear()
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

    def resolve(self, name: str) -> tuple[ModelState | None, str | None]:
        """The model that serves what is addressed to ``name`` (a model id or an alias),
        following promotions, and the alias when ``name`` is one. ``None`` when unknown."""
        alias = None
        if "@" in name:
            alias = name
            target = self.aliases.get(name)
            if target is None:
                return None, alias
            name = target
        state = self.models.get(name)
        hops = 0
        while state is not None and state.served_by is not None and hops < MAX_FORWARDS:
            nxt = self.models.get(state.served_by)
            if nxt is None or not nxt.live:
                break
            state, hops = nxt, hops + 1
        return state, alias


MAX_FORWARDS = 16
"""At most this many promotions are followed from an id (the rules make cycles impossible)."""
