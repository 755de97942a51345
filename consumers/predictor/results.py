"""Result records: ``PredictionResult`` JSON built straight from the work, for speed.

The hot path writes the wire dict itself rather than building a pydantic model per result;
``tests/consumers`` validate every result it produces against ``PredictionResult``, so the
two cannot drift apart. Fields that are None are left out (the model's defaults).
"""

from __future__ import annotations

from hashlib import sha1
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aiokafka import ConsumerRecord

from consumers.providers.secrets import redact_bytes
from registry.core.predictions import RESULT_NAMESPACE

if TYPE_CHECKING:
    from consumers.predictor.work import Work
    from consumers.routing import Route
    from registry.core.state import ModelState

__all__ = ["HEADERS", "Outgoing", "ResultWriter", "error_record", "fast_result_id"]

HEADERS = [("type", b"PredictionResult")]
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class Outgoing(NamedTuple):
    """A result to produce: same key as its request; ``source_partition`` is the request's."""

    key: bytes | None
    value: bytes
    source_partition: int
    request_id: str | None


_NS = RESULT_NAMESPACE.bytes


_VARIANT_NIBBLE = {c: "89ab"[int(c, 16) & 0x3] for c in "0123456789abcdef"}


def fast_result_id(request_id: str) -> str:
    """``registry.core.predictions.result_id`` (a UUID5), without building ``uuid.UUID`` objects.

    RFC 4122 section 4.3: the first 16 bytes of SHA-1(namespace + name), with the version
    nibble set to 5 and the variant bits to 10.
    """
    h = sha1(_NS + request_id.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_NIBBLE[h[16]]}{h[17:20]}-{h[20:32]}"


class ResultWriter:
    """Builds one batch's result records. The fields a request shares with the others of its
    route (model ids, version, variant, test...) are assembled once per route and copied."""

    def __init__(self, now: str, t0: float) -> None:
        self.now = now
        self.t0 = t0
        self._templates: dict[
            tuple[str, int, int], tuple[Route | None, ModelState | None, dict[str, Any]]
        ] = {}
        self._latency: dict[float, float] = {}  # done_at -> ms: a group finishes at one instant

    def _template(
        self, requested: str, route: Route | None, served: ModelState | None
    ) -> dict[str, Any]:
        key = (requested, id(route), id(served))
        hit = self._templates.get(key)
        if hit is not None and hit[0] is route and hit[1] is served:
            return hit[2]
        out: dict[str, Any] = {
            "type": "PredictionResult",
            "schema_version": 1,
            "occurred_at": self.now,
            "requested_model_id": requested,
            "variant": route.variant if route is not None else "none",
        }
        if served is not None:
            out["served_model_id"] = served.model_id
            out["served_version"] = served.version
            out["provider"] = served.wire["provider"]
        if route is not None and route.test_id is not None:
            out["test_id"] = route.test_id
            out["split_version"] = route.split_version
        self._templates[key] = (route, served, out)  # route and served stay alive: ids stay unique
        return out

    def record(self, w: Work) -> Outgoing:
        """The result of one request (an error result when it failed)."""
        req = w.request
        out = self._template(req.model_id, w.route, w.served).copy()
        out["id"] = fast_result_id(req.id)
        out["request_id"] = req.id
        latency = self._latency.get(w.done_at)
        if latency is None:
            latency = self._latency[w.done_at] = round(
                max(0.0, (w.done_at or self.t0) - self.t0) * 1000, 3
            )
        out["latency_ms"] = latency
        out["cached"] = w.cached
        if req.unit_id is not None:
            out["unit_id"] = req.unit_id
        if req.correlation_id is not None:
            out["correlation_id"] = req.correlation_id
        if w.fallback is not None:
            out["fallback"] = w.fallback
            out["fallback_reason"] = w.fallback_reason
        if w.failure is not None:
            out["error"] = w.failure.as_dict()
        else:
            out["output"] = w.output
        try:
            value = orjson.dumps(out, option=_OPTIONS)
        except TypeError:
            out.pop("output", None)
            out["error"] = {
                "code": "ProviderBadResponse",
                "message": "the provider's output is not JSON-serialisable",
            }
            value = orjson.dumps(out, option=_OPTIONS)
        # A provider's answer could echo a credential back (a buggy or hostile endpoint): a
        # resolved secret never leaves in a result.
        return Outgoing(w.record.key, redact_bytes(value), w.record.partition, req.id)


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
        "id": fast_result_id(request_id),
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
