"""Result records: ``PredictionResult`` JSON built straight from the work, for speed.

The hot path writes the wire dict itself rather than building a pydantic model per result;
``tests/consumers`` validate every result it produces against ``PredictionResult``, so the
two cannot drift apart. Fields that are None are left out (the model's defaults).

A result never exceeds ``MAX_RESULT_BYTES``: a larger one (an enormous provider output) is
replaced by an error result (``ProviderBadResponse``) saying so, as is one the broker refuses
as too large (``too_large_result``). Nothing here raises on a request's content.

Explanations: a provider answers a request that asks ``explain`` with an ``Explained``
(``consumers.providers.explain``); its output goes to ``output``, its explanation to
``explanation`` or its reason to ``explanation_error``. A request that asks and whose answer
has no ``Explained`` (from the result cache, a mock fallback) gets an
``explanation_error`` saying so; a request that does not ask never gets either.
"""

from __future__ import annotations

from hashlib import sha1
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aiokafka import ConsumerRecord

from consumers.errors import ProviderBadResponse
from consumers.providers.explain import Explained
from consumers.providers.secrets import redact_bytes
from registry.core.predictions import RESULT_NAMESPACE

if TYPE_CHECKING:
    from consumers.predictor.work import Work
    from consumers.routing import Route
    from registry.core.state import ModelState

__all__ = [
    "HEADERS",
    "MAX_RESULT_BYTES",
    "Outgoing",
    "ResultWriter",
    "error_record",
    "failed_result",
    "fast_result_id",
    "too_large_result",
]

HEADERS = [("type", b"PredictionResult")]
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
MAX_RESULT_BYTES = 1_000_000
"""The largest result value produced (the producer's default request limit is 1 MiB)."""
_READ_ID_FACTOR = 8  # an over-size request is parsed for its id only up to 8x the limit


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
    """Builds the result records of a group of requests. The fields a request shares with
    the others of its route (model ids, version, variant, test...) are assembled once per
    route and copied."""

    def __init__(self, now: str) -> None:
        self.now = now
        self._templates: dict[
            tuple[str, int, int], tuple[Route | None, ModelState | None, dict[str, Any]]
        ] = {}
        # each template's JSON without its closing brace, followed by a comma: a result is
        # that prefix and its own fields' JSON (only those are serialised per request)
        self._prefixes: dict[int, bytes] = {}
        # the last template used (consecutive requests mostly share their route)
        self._last: tuple[str, Route | None, ModelState | None, dict[str, Any]] = (
            "",
            None,
            None,
            {},
        )

    def _template(
        self, requested: str, route: Route | None, served: ModelState | None
    ) -> dict[str, Any]:
        last = self._last
        if last[1] is route and last[2] is served and last[0] == requested and route is not None:
            return last[3]
        out = self._lookup(requested, route, served)
        self._last = (requested, route, served, out)
        return out

    def _lookup(
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
        if "@" in requested:
            out["alias"] = requested
        if route is not None and route.resolved is not None:
            out["resolved_model_id"] = route.resolved
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
        template = self._template(req.model_id, w.route, w.served)
        prefix = self._prefixes.get(id(template))  # templates stay alive: ids stay unique
        if prefix is None:
            prefix = orjson.dumps(template, option=_OPTIONS)[:-1] + b","
            self._prefixes[id(template)] = prefix
        out: dict[str, Any] = {
            # a shadow answer has its own id: it is not the request's result
            "id": fast_result_id(req.id if w.shadow_of is None else f"{req.id}\x1fshadow"),
            "request_id": req.id,
        }
        done_at = w.done_at
        out["latency_ms"] = round(max(0.0, done_at - w.t0) * 1000, 3) if done_at else 0.0
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
        elif req.explain or type(w.output) is Explained:
            _explained(w, out)
        else:
            out["output"] = w.output
        try:
            value = prefix + orjson.dumps(out, option=_OPTIONS)[1:]
        except TypeError:  # not serialisable, or an integer beyond 64 bits
            value = _bad_output(
                w, {**template, **out}, "the provider's output is not JSON-serialisable"
            )
        if len(value) > MAX_RESULT_BYTES:
            value = _bad_output(
                w,
                {**template, **out},
                f"the result would be {len(value)} bytes, over the limit of "
                f"{MAX_RESULT_BYTES} bytes for a result",
            )
        # A provider's answer could echo a credential back (a buggy or hostile endpoint): a
        # resolved secret never leaves in a result.
        return Outgoing(w.record.key, redact_bytes(value), w.record.partition, req.id)


def _explained(w: Work, out: dict[str, Any]) -> None:
    """The output of ``w`` in ``out``, with its explanation (or why none) if it asks one."""
    output, asked = w.output, w.request.explain
    if type(output) is Explained:
        out["output"] = output.output
        if asked and output.explanation is not None:
            out["explanation"] = output.explanation
        elif asked:
            out["explanation_error"] = output.error
        return
    out["output"] = output
    if w.fallback == "mock":
        out["explanation_error"] = "a mock prediction has no explanation"
    elif w.cached:
        out["explanation_error"] = "answered from the result cache, which keeps no explanations"
    else:
        out["explanation_error"] = "the predictor did not ask the provider for an explanation"


def _bad_output(w: Work, out: dict[str, Any], message: str) -> bytes:
    w.failure = ProviderBadResponse(message)  # the result says so, and so do the counts
    out.pop("output", None)
    out.pop("explanation", None)
    out.pop("explanation_error", None)
    out["error"] = w.failure.as_dict()
    return orjson.dumps(out, option=_OPTIONS)


def _readable(value: bytes | None, max_bytes: int) -> dict[str, Any] | None:
    """``value`` as a JSON object when it parses (and is at most ``max_bytes``), else None."""
    if value is None or len(value) > max_bytes:
        return None
    try:
        raw = orjson.loads(value)
    except Exception:  # noqa: BLE001 - malformed, too deep...: no readable id
        return None
    return raw if isinstance(raw, dict) else None


def error_record(
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    now: str,
    *,
    max_bytes: int = 256 * 1024,
    code: str = "InvalidRequest",
) -> Outgoing | None:
    """An error result (``InvalidRequest``) for a refused request, if its ``id`` is readable.

    A record over ``max_bytes`` is read for its id only up to eight times that size; a larger
    one, or one that does not parse as a JSON object, has no readable id (None).
    """
    raw = _readable(record.value, max_bytes * _READ_ID_FACTOR)
    if raw is None:
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
        "error": {"code": code, "message": reason[:1000]},
    }
    unit_id = raw.get("unit_id")
    if isinstance(unit_id, str) and 0 < len(unit_id) <= 256:
        out["unit_id"] = unit_id
    correlation_id = raw.get("correlation_id")
    if isinstance(correlation_id, str) and len(correlation_id) <= 128:
        out["correlation_id"] = correlation_id
    try:
        value = orjson.dumps(out)
    except Exception:  # noqa: BLE001 - e.g. a lone surrogate in an id: no readable id then
        return None
    return Outgoing(record.key, value, record.partition, request_id)


def failed_result(w: Work, code: str, message: str, now: str) -> Outgoing:
    """A minimal error result for a request whose result could not be built."""
    req = w.request
    out: dict[str, Any] = {
        "type": "PredictionResult",
        "schema_version": 1,
        "occurred_at": now,
        "id": fast_result_id(req.id),
        "request_id": req.id,
        "requested_model_id": req.model_id,
        "variant": "none",
        "latency_ms": 0.0,
        "cached": False,
        "error": {"code": code, "message": message[:1000]},
    }
    return Outgoing(w.record.key, orjson.dumps(out), w.record.partition, req.id)


def too_large_result(out: Outgoing) -> Outgoing:
    """The error result that replaces ``out`` when the broker refuses it as too large."""
    raw = _readable(out.value, len(out.value)) or {}
    small = {
        k: v
        for k, v in raw.items()
        if k not in {"output", "error", "fallback_reason", "explanation", "explanation_error"}
        and len(orjson.dumps(v)) <= 1024
    }
    small.update(
        {
            "type": "PredictionResult",
            "id": small.get("id") or fast_result_id(out.request_id or ""),
            "request_id": out.request_id or small.get("request_id") or "",
            "requested_model_id": small.get("requested_model_id") or "",
            "error": {
                "code": "ProviderBadResponse",
                "message": f"the result of {len(out.value)} bytes was refused as too large",
            },
        }
    )
    small.pop("fallback", None)
    return out._replace(value=orjson.dumps(small))
