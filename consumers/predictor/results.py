"""Result records: ``PredictionResult`` JSON built straight from the work, for speed.

The hot path writes the wire dict itself rather than building a pydantic model per result;
``tests/consumers`` validate every result it produces against ``PredictionResult``, so the
two cannot drift apart. Fields that are None are left out (the model's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import ConsumerRecord

from consumers.messages import result_id

if TYPE_CHECKING:
    from consumers.predictor.pipeline import Work

__all__ = ["HEADERS", "Outgoing", "error_record", "result_record"]

HEADERS = [("type", b"PredictionResult")]
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A result to produce: same key as its request; ``source_partition`` is the request's."""

    key: bytes | None
    value: bytes
    source_partition: int
    request_id: str | None


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


def result_record(w: Work, now: str, t0: float) -> Outgoing:
    """The result of one request (an error result when it failed)."""
    req = w.request
    route, served = w.route, w.served
    out: dict[str, Any] = {
        "type": "PredictionResult",
        "schema_version": 1,
        "occurred_at": now,
        "id": result_id(req.id),
        "request_id": req.id,
        "requested_model_id": req.model_id,
        "variant": route.variant if route is not None else "none",
        "latency_ms": round(max(0.0, (w.done_at or t0) - t0) * 1000, 3),
        "cached": w.cached,
    }
    _put(out, "correlation_id", req.correlation_id)
    _put(out, "unit_id", req.unit_id)
    if served is not None:
        out["served_model_id"] = served.model_id
        out["served_version"] = served.config.version
        out["provider"] = str(served.config.provider)
    if route is not None:
        _put(out, "test_id", route.test_id)
        _put(out, "split_version", route.split_version)
    _put(out, "fallback", w.fallback)
    _put(out, "fallback_reason", w.fallback_reason)
    if w.failure is not None:
        out["error"] = w.failure.as_dict()
    else:
        out["output"] = w.output
    try:
        value = orjson.dumps(out, option=_OPTIONS)
    except TypeError:
        out.pop("output", None)
        out["error"] = {"code": "ProviderBadResponse", "message": "the provider's output is not JSON-serialisable"}
        value = orjson.dumps(out, option=_OPTIONS)
    return Outgoing(w.record.key, value, w.record.partition, req.id)


def error_record(record: ConsumerRecord[bytes, bytes], reason: str, now: str) -> Outgoing | None:
    """An ``InvalidRequest`` result for an unreadable request, if its ``id`` is readable."""
    try:
        raw = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    request_id = raw.get("id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        return None
    model_id = raw.get("model_id")
    out: dict[str, Any] = {
        "type": "PredictionResult",
        "schema_version": 1,
        "occurred_at": now,
        "id": result_id(request_id),
        "request_id": request_id,
        "requested_model_id": model_id[:256] if isinstance(model_id, str) else "",
        "variant": "none",
        "latency_ms": 0.0,
        "cached": False,
        "error": {"code": "InvalidRequest", "message": reason[:1000]},
    }
    unit_id = raw.get("unit_id")
    if isinstance(unit_id, str) and 0 < len(unit_id) <= 256:
        out["unit_id"] = unit_id
    correlation_id = raw.get("correlation_id")
    if isinstance(correlation_id, str) and len(correlation_id) <= 128:
        out["correlation_id"] = correlation_id
    return Outgoing(record.key, orjson.dumps(out), record.partition, request_id)
