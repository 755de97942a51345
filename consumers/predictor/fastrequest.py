"""Reading a ``PredictionRequest`` off the wire without pydantic on the hot path.

``decode(value, topic, partition, offset)`` parses the record with orjson and accepts it only
when every field is in the plain shape a request normally has (the right JSON types, lengths and
patterns). Anything else - an unknown field, a number where a string belongs, a time in an
unusual format, input orjson cannot parse - goes to the careful path,
``PredictionRequest.model_validate_json``, which accepts or refuses it and says why. So the
fast path never refuses on its own: a request is refused exactly when the careful path
refuses it, and an accepted one has the same values either way (property-tested in
``tests/consumers/test_fastrequest.py``).

The result is a ``Request``: the fields the predictor reads, in a slotted object (building
a pydantic model per request was a sixth of the consumer's CPU).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from registry.core.errors import describe_validation_error
from registry.core.messages import utc_now
from registry.core.predictions import PredictionRequest
from registry.core.types import ALIAS_PATTERN, MODEL_ID_PATTERN

__all__ = ["Request", "decode", "decode_careful", "derived_id"]


def _anchored(pattern: str) -> str:
    # pydantic's (Rust) regex reads ``$`` as the end of the text; Python's ``$`` also matches
    # before a final newline, ``\Z`` does not.
    return pattern.removeprefix("^").removesuffix("$") + r"\Z"


_MODEL_ID = re.compile(f"{_anchored(MODEL_ID_PATTERN)}|{_anchored(ALIAS_PATTERN)}")
# RFC 3339 as the wire writes it (``Z`` or an offset; at most microseconds): what
# ``datetime.fromisoformat`` and pydantic read the same way. Other forms take the careful path.
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)?\Z")
_BIG = 9.2e18  # orjson reads an integer beyond 64 bits as a float at least this large


def _big_number(value: Any) -> bool:
    """A float in ``value`` that could be an integer orjson read beyond 64 bits (the careful
    path keeps it an int); a float that large written as one only costs the careful path."""
    kind = type(value)
    if kind is float:
        return not -_BIG < value < _BIG
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)
        if kind is float:
            if not -_BIG < item < _BIG:
                return True
        elif (kind is dict or kind is list) and _big_number(item):
            return True
    return False


_ABSENT: Any = object()
_FIELDS = frozenset(
    {
        "type",
        "schema_version",
        "occurred_at",
        "correlation_id",
        "id",
        "model_id",
        "unit_id",
        "input",
        "explain",
    }
)


class Request:
    """A readable request: the fields of ``PredictionRequest``, without the model."""

    __slots__ = (
        "_occurred_at",
        "correlation_id",
        "explain",
        "id",
        "input",
        "model_id",
        "schema_version",
        "unit_id",
    )

    type = "PredictionRequest"

    def __init__(
        self,
        id: str,  # noqa: A002 - the wire's name
        model_id: str,
        input: Any,  # noqa: A002 - the wire's name
        unit_id: str | None = None,
        explain: bool = False,
        correlation_id: str | None = None,
        schema_version: int = 1,
        occurred_at: datetime | None = None,
    ) -> None:
        self.id = id
        self.model_id = model_id
        self.input = input
        self.unit_id = unit_id
        self.explain = explain
        self.correlation_id = correlation_id
        self.schema_version = schema_version
        self._occurred_at = occurred_at

    @property
    def occurred_at(self) -> datetime:
        """When the request says it was made; when it does not say, when it was first asked
        (as the model's default, read lazily: nothing on the hot path asks)."""
        at = self._occurred_at
        if at is None:
            at = self._occurred_at = utc_now()
        return at

    @property
    def routing_unit(self) -> str:
        return self.unit_id or self.id

    @classmethod
    def of(cls, model: PredictionRequest, request_id: str | None = None) -> Request:
        """The same request, from its pydantic model (``request_id`` replaces its id)."""
        return cls(
            model.id if request_id is None else request_id,
            model.model_id,
            model.input,
            model.unit_id,
            model.explain,
            model.correlation_id,
            model.schema_version,
            model.occurred_at,
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields, as ``PredictionRequest.model_dump()`` has them (for comparisons)."""
        return {
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "type": self.type,
            "id": self.id,
            "model_id": self.model_id,
            "unit_id": self.unit_id,
            "input": self.input,
            "explain": self.explain,
        }

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, model_id={self.model_id!r})"


def derived_id(topic: str, partition: int, offset: int) -> str:
    """The id of a request that gives none: its record's position, which a redelivery of
    that very record shares."""
    return f"{topic}/{partition}/{offset}"[-128:]


def decode(value: bytes, topic: str, partition: int, offset: int) -> Request | str:
    """The request in ``value`` (limits already checked), or why it is refused; a request
    without an id gets ``derived_id`` of its record."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return decode_careful(value, derived_id(topic, partition, offset))
    if type(raw) is not dict or not _FIELDS.issuperset(raw):
        return decode_careful(value, derived_id(topic, partition, offset))
    get = raw.get
    request_id = get("id", None)
    if request_id is None and "id" not in raw:
        request_id = derived_id(topic, partition, offset)
    model_id = get("model_id")
    data = get("input")
    unit_id = get("unit_id")
    explain = get("explain", False)
    correlation_id = get("correlation_id")
    version = get("schema_version", 1)
    at = get("occurred_at", _ABSENT)
    if (
        type(request_id) is not str
        or not 0 < len(request_id) <= 128
        or type(model_id) is not str
        or _MODEL_ID.match(model_id) is None
        or (type(data) is not dict and type(data) is not list and type(data) is not str)
        or (unit_id is not None and (type(unit_id) is not str or not 0 < len(unit_id) <= 256))
        or (explain is not False and explain is not True)
        or (
            correlation_id is not None
            and (type(correlation_id) is not str or len(correlation_id) > 128)
        )
        or type(version) is not int
        or version < 1
        or get("type", "PredictionRequest") != "PredictionRequest"
        or (type(data) is not str and _big_number(data))
    ):
        return decode_careful(value, derived_id(topic, partition, offset))
    occurred_at = None
    if at is not _ABSENT:
        if type(at) is not str or _TIME.match(at) is None:
            return decode_careful(value, derived_id(topic, partition, offset))
        try:
            occurred_at = datetime.fromisoformat(at)
        except ValueError:  # e.g. a 13th month: the careful path says so
            return decode_careful(value, derived_id(topic, partition, offset))
    return Request(
        request_id, model_id, data, unit_id, explain, correlation_id, version, occurred_at
    )


def decode_careful(value: bytes, default_id: str) -> Request | str:
    """The pydantic path: every form the contract accepts, and the reason for a refusal."""
    try:
        model = PredictionRequest.model_validate_json(value)
    except ValidationError as exc:
        return f"invalid PredictionRequest: {describe_validation_error(exc)[0]}"
    # No idempotency key given: the caller's derived one (the record's position).
    return Request.of(model, None if "id" in model.model_fields_set else default_id)
