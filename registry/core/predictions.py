"""The prediction wire contract: requests, results and outcomes (docs/design.md#predictions).

Keys: a request is keyed by its ``unit_id`` (e.g. the lead id), its result by the same key,
an outcome by its ``request_id``. JSON values, like the registry's messages; the Kafka header
``type`` carries the message type.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.core.messages import utc_now
from registry.core.types import ALIAS_PATTERN, MODEL_ID_PATTERN

__all__ = [
    "EXPLANATION_MAX_CONTRIBUTIONS",
    "EXPLANATION_MAX_NAME",
    "RESULT_NAMESPACE",
    "Contribution",
    "Explanation",
    "PredictionError",
    "PredictionErrorCode",
    "PredictionOutcome",
    "PredictionRequest",
    "PredictionResult",
    "Variant",
    "result_id",
    "wire_time",
]

Variant = Literal["champion", "challenger", "shadow", "none"]
"""``shadow``: a mirrored copy of a champion's request answered by a shadow challenger; its
result goes to ``predictions.shadow`` and is never anyone's answer."""
RESULT_NAMESPACE = uuid.UUID("0b8e7c2a-5d41-4f0e-8f7e-3c9a6d2b1e44")
RequestId = Annotated[str, Field(min_length=1, max_length=128)]
EXPLANATION_MAX_CONTRIBUTIONS = 20
"""At most this many contributions in an explanation (the largest by magnitude)."""
EXPLANATION_MAX_NAME = 128
"""Feature names, targets and string values of an explanation are cut to this many characters."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[int, Field(ge=1)] = 1
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: Annotated[str, Field(max_length=128)] | None = None


class PredictionRequest(_Message):
    """Ask for a prediction from ``model_id`` (a champion or its challenger: either routes).

    ``id`` is the idempotency key: a redelivered request gets the same answer. ``unit_id`` is
    what keeps a unit (a lead, an account) on one variant; it defaults to the request id.
    ``explain`` asks why: the result carries an ``explanation`` (or ``explanation_error``).
    Absent means false, and false is left out when written (a predictor that predates it
    still reads the request).
    """

    type: Literal["PredictionRequest"] = "PredictionRequest"
    id: RequestId = Field(default_factory=lambda: str(uuid.uuid4()))
    model_id: Annotated[str, Field(pattern=f"{MODEL_ID_PATTERN}|{ALIAS_PATTERN}")]
    """A model id, or an alias (``lead-scoring@production``) that names one."""
    unit_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: dict[str, Any] | list[Any] | str
    explain: Annotated[bool, Field(exclude_if=lambda v: v is False)] = False

    @property
    def routing_unit(self) -> str:
        return self.unit_id or self.id


class PredictionErrorCode(StrEnum):
    """Stable codes of prediction errors (the ``error.code`` of a result)."""

    INVALID_REQUEST = "InvalidRequest"
    MODEL_NOT_FOUND = "ModelNotFound"
    MODEL_NOT_ACTIVE = "ModelNotActive"
    INVALID_INPUT = "InvalidInput"
    PROVIDER_TIMEOUT = "ProviderTimeout"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    PROVIDER_REJECTED = "ProviderRejected"
    PROVIDER_BAD_RESPONSE = "ProviderBadResponse"
    PROVIDER_NOT_INSTALLED = "ProviderNotInstalled"
    PROVIDER_CONFIG_INVALID = "ProviderConfigInvalid"
    HOST_NOT_ALLOWED = "HostNotAllowed"
    CREDENTIAL_UNAVAILABLE = "CredentialUnavailable"
    PROVIDER_FAILED = "ProviderFailed"


class PredictionError(BaseModel):
    """Why a request got no prediction: a stable ``code`` and a message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str


class Contribution(BaseModel):
    """How much one feature moved the explained value, from the baseline (signed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: Annotated[str, Field(max_length=EXPLANATION_MAX_NAME)]
    value: float | int | bool | Annotated[str, Field(max_length=EXPLANATION_MAX_NAME)] | None = None
    contribution: float


class Explanation(BaseModel):
    """Why the output is what it is: ``baseline`` + the contributions = ``target_value``.

    ``method``: ``linear`` (coefficient x value), ``tree_path`` (Saabas: each split's change
    of the node value, credited to its feature), ``shap``, or ``custom`` (the model's own).
    ``target`` says which value is explained (e.g. ``log-odds of class 1``). At most
    ``EXPLANATION_MAX_CONTRIBUTIONS`` contributions, largest magnitude first; the others are
    summed in ``omitted_contribution`` (``omitted_features`` of them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["linear", "tree_path", "shap", "custom"]
    target: Annotated[str, Field(max_length=EXPLANATION_MAX_NAME)] | None = None
    target_value: float | None = None
    baseline: float | None = None
    contributions: Annotated[
        list[Contribution], Field(max_length=EXPLANATION_MAX_CONTRIBUTIONS)
    ] = Field(default_factory=list)
    omitted_features: Annotated[int, Field(ge=0)] = 0
    omitted_contribution: float = 0.0


class PredictionResult(_Message):
    """The answer to one request, tagged with the variant that served it.

    ``explanation``/``explanation_error``: only when the request asked ``explain`` and got a
    prediction; one or the other (an explanation that cannot be made never fails the
    prediction).
    """

    type: Literal["PredictionResult"] = "PredictionResult"
    id: str
    request_id: RequestId
    requested_model_id: str
    alias: str | None = None
    """The alias the request named, if it named one."""
    resolved_model_id: str | None = None
    """The model the requested id or alias led to (after promotions), before the A/B split."""
    served_model_id: str | None = None
    served_version: str | None = None
    unit_id: str | None = None
    variant: Variant = "none"
    test_id: str | None = None
    split_version: int | None = None
    output: Any = None
    latency_ms: float = 0.0
    provider: str | None = None
    cached: bool = False
    fallback: Literal["champion", "mock"] | None = None
    fallback_reason: str | None = None
    error: PredictionError | None = None
    explanation: Explanation | None = None
    explanation_error: Annotated[str, Field(max_length=1000)] | None = None

    @field_validator("latency_ms")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        return max(0.0, v)


class PredictionOutcome(_Message):
    """Ground truth for a request, joined by ``request_id`` (may arrive before the result)."""

    type: Literal["PredictionOutcome"] = "PredictionOutcome"
    id: RequestId = Field(default_factory=lambda: str(uuid.uuid4()))
    request_id: RequestId
    actual: float | int | bool | str


def result_id(request_id: str) -> str:
    """The result id of a request: deterministic, so a redelivery yields the same id."""
    return str(uuid.uuid5(RESULT_NAMESPACE, request_id))


def wire_time(at: datetime | None = None) -> str:
    """A time as every message writes it: RFC 3339 in UTC with ``Z`` and microseconds
    (``2026-12-02T18:04:05.123456Z``; ``now`` when ``at`` is None)."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
