"""``Work``: one readable request on its way to a result, through the pipeline's steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord

from consumers.cache import MISSING, CacheKey
from consumers.errors import PredictionFailure
from consumers.predictor.fastrequest import Request
from consumers.routing import Route
from registry.core.state import ModelState

if TYPE_CHECKING:
    from consumers.predictor.offsets import PartitionWindow

__all__ = ["Work"]


@dataclass(slots=True)
class Work:
    """One readable request on its way to a result.

    ``window`` (with ``record.offset``) is its record's slot in the offset tracker, finished
    once its result is acknowledged; ``t0`` the ``perf_counter`` when it was admitted
    (``latency_ms`` starts there).
    """

    record: ConsumerRecord[bytes, bytes]
    request: Request
    window: PartitionWindow | None = None
    t0: float = 0.0
    route: Route | None = None
    served: ModelState | None = None
    key: CacheKey | None = None
    output: Any = MISSING
    failure: PredictionFailure | None = None
    cached: bool = False
    fallback: str | None = None
    fallback_reason: str | None = None
    fell_back: bool = False  # sent to the champion once already: never again
    done_at: float = 0.0
    shadow_of: Work | None = None  # a mirrored copy for a shadow challenger (no offset slot)
