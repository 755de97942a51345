"""The API's request and response bodies (pydantic): what the OpenAPI document is made of.

Request bodies reuse the wire contract's types (``ModelConfig``, ``ConfigChanges``,
``Metrics``, ``Guardrails``); responses describe what the routes return (the projection's
views in their JSON form). camelCase on the wire, like the commands' payloads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from registry.core.messages import ConfigChanges
from registry.core.types import (
    ALIAS_PATTERN,
    MODEL_ID_PATTERN,
    ABMode,
    Guardrails,
    Metrics,
    ModelConfig,
    Routing,
    SemVerStr,
    Status,
)

__all__ = [
    "ABTestOut",
    "ABTestPage",
    "AliasBody",
    "AliasOut",
    "EventRefOut",
    "HealthOut",
    "MetricsBody",
    "ModelOut",
    "ModelPage",
    "PredictBody",
    "Problem",
    "PromoteBody",
    "ReasonBody",
    "ReleaseBody",
    "StartABTestBody",
    "StatusBody",
    "StatusChangeOut",
    "TrafficBody",
    "VersionOut",
    "WriteOut",
]

ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
AliasName = Annotated[str, Field(pattern=ALIAS_PATTERN)]
Reason = Annotated[str, Field(max_length=2000)]
Traffic = Annotated[float, Field(ge=0, le=100)]


class Body(BaseModel):
    """Request bodies: camelCase (snake_case accepted), nothing unknown."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class Out(BaseModel):
    """Response bodies: camelCase."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)


# --------------------------------------------------------------------------- requests


class StatusBody(Body):
    status: Status
    reason: Reason | None = None


class ReleaseBody(Body):
    version: SemVerStr
    status: Status | None = None
    metrics: Metrics | None = None
    changes: ConfigChanges | None = None


class MetricsBody(Body):
    metrics: Metrics
    replace: bool = False
    """True: the metrics become the whole set; false: merged into the current set."""


class AliasBody(Body):
    alias: AliasName


class StartABTestBody(Body):
    challenger_model_id: ModelId
    champion_model_id: ModelId
    traffic_percentage: Traffic
    routing: Routing = "hash"
    mode: ABMode = "split"
    guardrails: Guardrails | None = None


class TrafficBody(Body):
    traffic_percentage: Traffic
    reason: Reason | None = None


class ReasonBody(Body):
    reason: Reason | None = None


class PromoteBody(Body):
    reason: Reason | None = None
    evidence: bool = True
    """Keep the monitor's report of the running test in the event (as ``ab promote`` does)."""


class PredictBody(Body):
    model_id: Annotated[str, Field(min_length=1, max_length=200)]
    """A model id or an alias (``name@label``)."""
    input: dict[str, Any] | list[Any] | str
    unit_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    correlation_id: Annotated[str, Field(max_length=128)] | None = None
    explain: bool = False
    timeout_s: Annotated[float, Field(gt=0, le=60)] | None = None
    """How long to wait for the result (default: the service's ``predict_timeout_s``)."""


# --------------------------------------------------------------------------- responses


class Problem(BaseModel):
    """An error (RFC 9457 problem details), with the registry's stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None


class HealthOut(Out):
    status: Literal["ok"]
    projection: Literal["ok", "unavailable"]
    monitor: Literal["ok", "unavailable"]


class EventRefOut(Out):
    id: str
    type: str
    revision: int
    partition: int
    offset: int


class WriteOut(Out):
    """An accepted (or duplicate: the same command id seen before) command."""

    command_id: str
    model_id: str
    outcome: Literal["accepted", "duplicate"]
    revision: int | None = None
    events: list[EventRefOut]


class ABTestStateOut(Out):
    test_id: str
    champion_model_id: str
    traffic_percentage: float | None = None
    routing: str | None = None
    split_version: int | None = None
    started_at: str | None = None
    mode: str
    guardrails: dict[str, Any] | None = None


class PositionOut(Out):
    partition: int
    offset: int


class ModelOut(Out):
    """A model as the projection holds it: its configuration (credentials are references
    only) and the projection's bookkeeping."""

    config: ModelConfig
    revision: int
    registered_at: str
    updated_at: str
    ab_test: ABTestStateOut | None = None
    aliases: list[str]
    served_by: str | None = None
    replaces: str | None = None
    last_position: PositionOut


class ModelPage(Out):
    items: list[ModelOut]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


class VersionOut(Out):
    model_id: str
    version: str
    released_status: str
    config: ModelConfig
    metrics: Metrics | None = None
    released_at: str
    released_by: str
    released_revision: int
    partition: int
    offset: int
    superseded_at: str | None = None


class StatusChangeOut(Out):
    model_id: str
    revision: int
    from_status: str | None = None
    to_status: str
    changed_at: str
    actor: str
    reason: str | None = None
    event_type: str
    event_id: str
    partition: int
    offset: int


class AliasOut(Out):
    alias: str
    model_id: str
    version: str
    status: str


class SplitOut(Out):
    split_version: int
    traffic_percentage: float
    previous_percentage: float | None = None
    changed_at: str
    actor: str
    offset: int


class ABTestOut(Out):
    test_id: str
    challenger_model_id: str
    champion_model_id: str
    routing: str
    traffic_percentage: float
    split_version: int
    status: str
    running: bool
    started_at: str
    started_by: str
    stopped_at: str | None = None
    stopped_by: str | None = None
    stop_reason: str | None = None
    splits: list[SplitOut]


class ABTestPage(Out):
    items: list[ABTestOut]
