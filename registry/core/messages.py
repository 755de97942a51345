"""Commands (imperative) and events (past tense), with their envelope.

See docs/design.md#the-wire-contract.

Envelope fields are snake_case (``model_id``, ``schema_version``); payloads use the spec's
camelCase. Each message is declared once, as a class with its ``type`` literal; declaring it
registers it on its base (``CommandBase.registered()`` / ``EventBase.registered()``), and
everything that lists messages derives from those registries: the discriminated unions the
codec validates with, the type-name sets, the rules' handler and effect tables, the JSON
Schema export.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from registry.core.types import (
    ALIAS_PATTERN,
    MODEL_ID_PATTERN,
    ABMode,
    CredentialRefs,
    Guardrails,
    Metrics,
    ModelConfig,
    ProviderConfig,
    Routing,
    SemVerStr,
    Status,
    WireModel,
    check_config_secrets,
)

REGISTRY_KEY = "__registry__"
"""Aggregate id of registry-wide messages (``ClearRegistry`` / ``RegistryCleared``)."""

ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
Alias = Annotated[str, Field(pattern=ALIAS_PATTERN)]
Reason = Annotated[str, Field(max_length=2000)]
Traffic = Annotated[float, Field(ge=0, le=100)]


def new_id() -> str:
    """A fresh message id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Now, in UTC (the only clock read of the message layer; the rules take time as input)."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields common to commands and events.

    ``type`` names the message; each concrete class narrows it to its own literal, which is
    the one place a message type is spelled.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 1
    TYPE: ClassVar[str] = ""
    """The concrete class's ``type`` (empty on the abstract bases)."""

    type: str
    id: Annotated[str, Field(min_length=1, max_length=128)] = Field(default_factory=new_id)
    schema_version: Annotated[int, Field(ge=1)] = 1
    model_id: Annotated[str, Field(pattern=MODEL_ID_PATTERN + "|^__registry__$")]
    occurred_at: datetime = Field(default_factory=utc_now)
    actor: Annotated[str, Field(min_length=1, max_length=200)] = "unknown"
    correlation_id: Annotated[str, Field(max_length=128)] | None = None
    causation_id: Annotated[str, Field(max_length=128)] | None = None

    @field_validator("schema_version")
    @classmethod
    def _current_schema(cls, value: int) -> int:
        # Older versions are upcast by the codec before validation; anything else is refused
        # so that a message is never read with the wrong schema.
        if value != cls.SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is not {cls.SCHEMA_VERSION}; decode through "
                "registry.codec to upcast"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --------------------------------------------------------------------------- payloads


class ConfigChanges(WireModel):
    """The mutable part of a ``ModelConfig``; unset fields stay as they are."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    endpoint: str | None = None
    credentials: CredentialRefs | None = None
    provider_config: ProviderConfig | None = None
    parameters: dict[str, Any] | None = None
    last_trained: datetime | None = None

    @model_validator(mode="after")
    def _no_secrets(self) -> ConfigChanges:
        # null would mean "clear the field", which the wire (nulls omitted) cannot carry and
        # required fields cannot take: refuse it rather than let the log and the state differ.
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(
                f"null is not a value for {', '.join(nulls)}; clearing a field is not supported"
            )
        check_config_secrets(self.endpoint, self.parameters)
        return self

    def is_empty(self) -> bool:
        return not self.model_fields_set


class ReleaseVersionPayload(WireModel):
    version: SemVerStr
    status: Status | None = None
    metrics: Metrics | None = None
    changes: ConfigChanges = Field(default_factory=ConfigChanges)


class ChangeStatusPayload(WireModel):
    status: Status
    reason: Reason | None = None


class RecordMetricsPayload(WireModel):
    """In a command, ``metrics`` merge into the model's current set unless ``replace`` is true
    (then they are the whole set). In the event, ``metrics`` is the resulting whole set."""

    metrics: Metrics
    replace: bool | None = None


class UpdateConfigPayload(WireModel):
    changes: ConfigChanges


class StartABTestPayload(WireModel):
    champion_model_id: ModelId
    traffic_percentage: Traffic
    routing: Routing = "hash"
    mode: ABMode = "split"
    guardrails: Guardrails | None = None


class Evidence(WireModel):
    """What the report said when a promotion was decided (kept in the event for the audit)."""

    verdict: Annotated[str, Field(max_length=200)]
    figures: Annotated[dict[str, float | int | str | None], Field(max_length=64)] = Field(
        default_factory=dict
    )
    report_at: datetime | None = None


class PromotePayload(WireModel):
    reason: Reason | None = None
    evidence: Evidence | None = None


class AliasPayload(WireModel):
    alias: Alias


class ChangeABTrafficPayload(WireModel):
    traffic_percentage: Traffic
    reason: Reason | None = None


class ReasonPayload(WireModel):
    reason: Reason | None = None


class ClearRegistryPayload(WireModel):
    reason: Reason | None = None
    confirm: bool = False


class ModelVersionReleasedPayload(WireModel):
    version: SemVerStr
    previous_version: SemVerStr
    status: Status
    metrics: Metrics | None = None
    changes: ConfigChanges = Field(default_factory=ConfigChanges)
    resets_metrics: bool | None = None
    """True: the new version starts with ``metrics`` only (the previous version's stay on that
    version). Absent in events written before it existed, which carried the metrics over."""


class ModelStatusChangedPayload(WireModel):
    from_status: Status = Field(alias="from")
    to_status: Status = Field(alias="to")
    reason: Reason | None = None


class ABTestStartedPayload(WireModel):
    test_id: str
    champion_model_id: ModelId
    traffic_percentage: Traffic
    routing: Routing = "hash"
    split_version: int = 1
    mode: ABMode | None = None
    guardrails: Guardrails | None = None


class ABTestTrafficChangedPayload(WireModel):
    test_id: str
    previous_percentage: Traffic
    traffic_percentage: Traffic
    split_version: int
    reason: Reason | None = None


class ABTestStoppedPayload(WireModel):
    test_id: str
    reason: Reason | None = None


class ChallengerPromotedPayload(WireModel):
    test_id: str
    champion_model_id: ModelId
    champion_version: SemVerStr
    version: SemVerStr
    aliases: list[Alias] = Field(default_factory=list)
    """The aliases moved from the champion to the challenger."""
    reason: Reason | None = None
    evidence: Evidence | None = None


class PromotionRolledBackPayload(WireModel):
    restored_model_id: ModelId
    restored_version: SemVerStr
    aliases: list[Alias] = Field(default_factory=list)
    """The aliases moved back to the restored model."""
    reason: Reason | None = None


class AliasAssignedPayload(WireModel):
    alias: Alias
    previous_model_id: ModelId | None = None


class ModelUnregisteredPayload(WireModel):
    version: SemVerStr
    reason: Reason | None = None


class RegistryClearedPayload(WireModel):
    reason: Reason | None = None
    model_ids: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- commands


class _Registered(Envelope):
    """Collects its concrete subclasses by ``type`` as they are declared."""

    _REGISTRY: ClassVar[dict[str, type[Envelope]]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["type"].default
        if isinstance(default, str) and default:
            if default != cls.__name__:
                raise TypeError(f"{cls.__name__} declares type {default!r}; use its class name")
            cls.TYPE = default
            cls._REGISTRY[default] = cls

    @classmethod
    def registered(cls) -> dict[str, type[Self]]:
        """Every concrete message of this kind, by type name, in declaration order."""
        return dict(cls._REGISTRY)  # type: ignore[arg-type]  # filled only with subclasses


class CommandBase(_Registered):
    """A request to change the registry. ``expected_revision`` enables optimistic concurrency."""

    _REGISTRY: ClassVar[dict[str, type[Envelope]]] = {}

    expected_revision: Annotated[int, Field(ge=0)] | None = None


class RegisterModel(CommandBase):
    type: Literal["RegisterModel"] = "RegisterModel"
    payload: ModelConfig

    @model_validator(mode="after")
    def _id_matches(self) -> RegisterModel:
        if self.payload.id != self.model_id:
            raise ValueError(
                f"model_id '{self.model_id}' differs from payload.id '{self.payload.id}'"
            )
        return self


class ReleaseVersion(CommandBase):
    type: Literal["ReleaseVersion"] = "ReleaseVersion"
    payload: ReleaseVersionPayload


class ChangeStatus(CommandBase):
    type: Literal["ChangeStatus"] = "ChangeStatus"
    payload: ChangeStatusPayload


class RecordMetrics(CommandBase):
    type: Literal["RecordMetrics"] = "RecordMetrics"
    payload: RecordMetricsPayload


class UpdateConfig(CommandBase):
    type: Literal["UpdateConfig"] = "UpdateConfig"
    payload: UpdateConfigPayload


class StartABTest(CommandBase):
    """Start routing a share of the champion's traffic to this model (the challenger)."""

    type: Literal["StartABTest"] = "StartABTest"
    payload: StartABTestPayload


class ChangeABTraffic(CommandBase):
    type: Literal["ChangeABTraffic"] = "ChangeABTraffic"
    payload: ChangeABTrafficPayload


class StopABTest(CommandBase):
    type: Literal["StopABTest"] = "StopABTest"
    payload: ReasonPayload = Field(default_factory=ReasonPayload)


class PromoteChallenger(CommandBase):
    """End the challenger's test by making it the served model for everything addressed to
    its champion (the champion's id and aliases); the champion is deprecated."""

    type: Literal["PromoteChallenger"] = "PromoteChallenger"
    payload: PromotePayload = Field(default_factory=PromotePayload)


class RollbackPromotion(CommandBase):
    """Undo the promotion that made this model the served one: its predecessor serves again."""

    type: Literal["RollbackPromotion"] = "RollbackPromotion"
    payload: ReasonPayload = Field(default_factory=ReasonPayload)


class AssignAlias(CommandBase):
    """Point ``alias`` at this model (moving it from any other); the model must be active."""

    type: Literal["AssignAlias"] = "AssignAlias"
    payload: AliasPayload


class RemoveAlias(CommandBase):
    type: Literal["RemoveAlias"] = "RemoveAlias"
    payload: AliasPayload


class UnregisterModel(CommandBase):
    type: Literal["UnregisterModel"] = "UnregisterModel"
    payload: ReasonPayload = Field(default_factory=ReasonPayload)


class ClearRegistry(CommandBase):
    """Testing only: refused unless the decider allows it; recorded, never a deletion."""

    type: Literal["ClearRegistry"] = "ClearRegistry"
    model_id: str = REGISTRY_KEY
    payload: ClearRegistryPayload = Field(default_factory=ClearRegistryPayload)


# --------------------------------------------------------------------------- events


class EventBase(_Registered):
    """An immutable fact. ``revision`` is 1, 2, 3... per model with no gaps."""

    _REGISTRY: ClassVar[dict[str, type[Envelope]]] = {}

    revision: Annotated[int, Field(ge=1)]
    signed_by: Annotated[str, Field(max_length=200)] | None = None
    """The actor whose key signed the command (the actor, or a gateway signing for it)."""
    signature: Annotated[str, Field(max_length=200)] | None = None
    """The command's signature (base64 Ed25519; registry.core.auth)."""
    command_digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the command's bytes, the message the signature covers."""
    prev: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the previous event's bytes in this partition (the hash chain)."""


class ModelRegistered(EventBase):
    type: Literal["ModelRegistered"] = "ModelRegistered"
    payload: ModelConfig


class ModelVersionReleased(EventBase):
    type: Literal["ModelVersionReleased"] = "ModelVersionReleased"
    payload: ModelVersionReleasedPayload


class ModelStatusChanged(EventBase):
    type: Literal["ModelStatusChanged"] = "ModelStatusChanged"
    payload: ModelStatusChangedPayload


class ModelMetricsRecorded(EventBase):
    type: Literal["ModelMetricsRecorded"] = "ModelMetricsRecorded"
    payload: RecordMetricsPayload


class ModelConfigUpdated(EventBase):
    type: Literal["ModelConfigUpdated"] = "ModelConfigUpdated"
    payload: UpdateConfigPayload


class ABTestStarted(EventBase):
    type: Literal["ABTestStarted"] = "ABTestStarted"
    payload: ABTestStartedPayload


class ABTestTrafficChanged(EventBase):
    type: Literal["ABTestTrafficChanged"] = "ABTestTrafficChanged"
    payload: ABTestTrafficChangedPayload


class ABTestStopped(EventBase):
    type: Literal["ABTestStopped"] = "ABTestStopped"
    payload: ABTestStoppedPayload


class ChallengerPromoted(EventBase):
    type: Literal["ChallengerPromoted"] = "ChallengerPromoted"
    payload: ChallengerPromotedPayload


class PromotionRolledBack(EventBase):
    type: Literal["PromotionRolledBack"] = "PromotionRolledBack"
    payload: PromotionRolledBackPayload


class AliasAssigned(EventBase):
    type: Literal["AliasAssigned"] = "AliasAssigned"
    payload: AliasAssignedPayload


class AliasRemoved(EventBase):
    type: Literal["AliasRemoved"] = "AliasRemoved"
    payload: AliasPayload


class ModelUnregistered(EventBase):
    type: Literal["ModelUnregistered"] = "ModelUnregistered"
    payload: ModelUnregisteredPayload


class RegistryCleared(EventBase):
    type: Literal["RegistryCleared"] = "RegistryCleared"
    model_id: str = REGISTRY_KEY
    payload: RegistryClearedPayload = Field(default_factory=RegistryClearedPayload)


def _union_of(classes: dict[str, type[Any]]) -> TypeAdapter[Any]:
    members = tuple(classes.values())
    union: Any = Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


COMMANDS: dict[str, type[CommandBase]] = CommandBase.registered()
"""Every command class by type name."""
EVENTS: dict[str, type[EventBase]] = EventBase.registered()
"""Every event class by type name."""
COMMAND_ADAPTER: TypeAdapter[CommandBase] = _union_of(COMMANDS)
"""Validates any command, picking the class by ``type``."""
EVENT_ADAPTER: TypeAdapter[EventBase] = _union_of(EVENTS)
"""Validates any event, picking the class by ``type``."""


# --------------------------------------------------------------------------- replies


class EventRef(BaseModel):
    """Where an event landed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    type: str
    revision: int
    partition: int
    offset: int


class CommandReply(BaseModel):
    """The decider's answer to one command, keyed by command id on ``registry.replies``.

    ``outcome``: ``accepted`` (events appended, or none for a no-op), ``rejected`` (see
    ``rejection``), or ``duplicate`` (this command id was already applied; ``events`` are the
    ones it produced then).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["CommandReply"] = "CommandReply"
    command_id: str
    command_type: str | None = None
    model_id: str | None = None
    outcome: Literal["accepted", "rejected", "duplicate"]
    revision: int | None = None
    events: list[EventRef] = Field(default_factory=list)
    rejection: dict[str, str] | None = None
    occurred_at: datetime = Field(default_factory=utc_now)
