"""``Work``: one readable request on its way to a result, through the pipeline's steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from consumers.cache import MISSING, CacheKey
from consumers.errors import PredictionFailure
from consumers.routing import Route
from registry.core.predictions import PredictionRequest
from registry.core.state import ModelState

__all__ = ["Work"]


@dataclass(slots=True)
class Work:
    """One readable request on its way to a result."""

    record: ConsumerRecord[bytes, bytes]
    request: PredictionRequest
    route: Route | None = None
    served: ModelState | None = None
    key: CacheKey | None = None
    output: Any = MISSING
    failure: PredictionFailure | None = None
    cached: bool = False
    fallback: str | None = None
    fallback_reason: str | None = None
    done_at: float = 0.0
