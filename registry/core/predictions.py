"""The prediction wire contract: requests, results and outcomes (docs/design.md#predictions).

Keys: a request is keyed by its ``unit_id`` (e.g. the lead id), its result by the same key,
an outcome by its ``request_id``. JSON values, like the registry's messages; the Kafka header
``type`` carries the message type.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.core.messages import utc_now
from registry.core.types import MODEL_ID_PATTERN

__all__ = [
    "RESULT_NAMESPACE",
    "PredictionError",
    "PredictionOutcome",
    "PredictionRequest",
    "PredictionResult",
    "Variant",
    "result_id",
]

Variant = Literal["champion", "challenger", "none"]
RESULT_NAMESPACE = uuid.UUID("0b8e7c2a-5d41-4f0e-8f7e-3c9a6d2b1e44")
RequestId = Annotated[str, Field(min_length=1, max_length=128)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[int, Field(ge=1)] = 1
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: Annotated[str, Field(max_length=128)] | None = None


class PredictionRequest(_Message):
    """Ask for a prediction from ``model_id`` (a champion or its challenger: either routes).

    ``id`` is the idempotency key: a redelivered request gets the same answer. ``unit_id`` is
    what keeps a unit (a lead, an account) on one variant; it defaults to the request id.
    """

    type: Literal["PredictionRequest"] = "PredictionRequest"
    id: RequestId = Field(default_factory=lambda: str(uuid.uuid4()))
    model_id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    unit_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: dict[str, Any] | list[Any] | str

    @property
    def routing_unit(self) -> str:
        return self.unit_id or self.id


class PredictionError(BaseModel):
    """Why a request got no prediction: a stable ``code`` and a message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str


class PredictionResult(_Message):
    """The answer to one request, tagged with the variant that served it."""

    type: Literal["PredictionResult"] = "PredictionResult"
    id: str
    request_id: RequestId
    requested_model_id: str
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
