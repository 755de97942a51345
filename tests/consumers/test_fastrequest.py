"""The fast request decoder against the careful (pydantic) path: the same requests accepted
and refused, with the same values (``consumers.predictor.fastrequest``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.predictor.fastrequest import Request, decode, decode_careful, derived_id
from registry.core.predictions import PredictionRequest

TOPIC, PARTITION, OFFSET = "predictions.requests", 3, 41
DERIVED = derived_id(TOPIC, PARTITION, OFFSET)


_minimal: dict[str, Any] = {"id": "r", "model_id": "m", "input": {}}


def _both(value: bytes) -> tuple[Request | str, Request | str]:
    return decode(value, TOPIC, PARTITION, OFFSET), decode_careful(value, DERIVED)


def _same(value: bytes) -> None:
    fast, careful = _both(value)
    assert isinstance(fast, str) == isinstance(careful, str), (value, fast, careful)
    if isinstance(fast, str):
        assert fast == careful  # refusals always come from the careful path
        return
    assert isinstance(careful, Request)
    a, b = fast.as_dict(), careful.as_dict()
    if b"occurred_at" not in value:  # "now" when absent: two clock reads
        a.pop("occurred_at"), b.pop("occurred_at")
    assert a == b or repr(a) == repr(b), value  # repr: NaN is not equal to itself
    assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}
    # and what pydantic itself makes of it
    model = PredictionRequest.model_validate_json(value)
    expected = {name: getattr(model, name) for name in Request(**_minimal).as_dict()}
    if "id" not in model.model_fields_set:
        expected["id"] = DERIVED
    if b"occurred_at" not in value:
        expected.pop("occurred_at")
    assert a == expected or repr(a) == repr(expected)


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.one_of(
    st.text(min_size=0, max_size=140),
    st.sampled_from(["lead-v1", "lead@production", "a" * 128, "a" * 129, "bad id", "x\n", ""]),
    _json_scalars,
)
_model_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,130}", fullmatch=True),
    st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}@[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True
    ),
    st.sampled_from(["lead-v1\n", "-lead", "lead v1", "lead@", "a@b@c", "é"]),
    _json_scalars,
)
_times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-12-02T18:04:05Z",
            "2026-12-02T18:04:05.1234567Z",
            "2026-13-02T18:04:05Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T18:04:60Z",
            "2026-12-02T18:04:05+02:00",
            "2026-12-02T18:04:05-00:00",
            "2026-12-02t18:04:05z",
            "2026-12-02 18:04:05Z",
            "2026-12-02",
            "1764698645",
        ]
    ),
    _json_scalars,
)
_fields: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(st.just("PredictionRequest"), st.just("PredictionResult"), _json_scalars),
    "id": _ids,
    "model_id": _model_ids,
    "unit_id": st.one_of(st.none(), st.text(max_size=260), _json_scalars),
    "input": st.one_of(_json, st.dictionaries(st.text(max_size=8), _json_scalars, max_size=6)),
    "explain": st.one_of(st.booleans(), _json_scalars),
    "correlation_id": st.one_of(st.none(), st.text(max_size=130), _json_scalars),
    "schema_version": st.one_of(st.integers(-2, 3), _json_scalars),
    "occurred_at": _times,
    "extra": _json_scalars,
}


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    chosen = draw(st.sets(st.sampled_from(sorted(_fields))))
    body: dict[str, Any] = {"model_id": "lead-v1", "input": {"visits": 3}}
    if draw(st.booleans()):  # mostly well-formed, sometimes missing the required fields
        body = {}
    for name in sorted(chosen):
        body[name] = draw(_fields[name])
    if draw(st.booleans()):
        return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    try:
        return orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(body).encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_fast_and_careful_agree(value: bytes) -> None:
    _same(value)


@pytest.mark.parametrize(
    "value",
    [
        b'{"model_id": "lead-v1", "input": {"a": 1}}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {"a": 18446744073709551616}}',
        b'{"id": "r1", "model_id": "lead-v1", "input": [-9223372036854775809]}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {"a": 1e400}}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {"a": NaN}}',
        b'{"id": "r1", "id": "r2", "model_id": "lead-v1", "input": {}}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {"a": 1, "a": 2}}',
        b'{"id": "\\ud800", "model_id": "lead-v1", "input": {}}',
        b'{"id": "r1", "model_id": "lead-v1\\n", "input": {}}',
        b'{"id": "r1", "model_id": "lead-v1", "input": "text"}',
        b'{"id": "r1", "model_id": "lead-v1", "input": 5}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "explain": null}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "explain": "true"}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "explain": 1}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "schema_version": 1.0}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "schema_version": "2"}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "schema_version": true}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "occurred_at": null}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "occurred_at": 1764698645}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "unit_id": null}',
        b'{"id": "r1", "model_id": "lead-v1", "input": {}, "unit_id": ""}',
        b'{"id": null, "model_id": "lead-v1", "input": {}}',
        b'{"id": 7, "model_id": "lead-v1", "input": {}}',
        b"[1, 2]",
        b'"text"',
        b"not json",
        b"",
        b'{"id": "r1", "model_id": "lead-v1", "input": {}} trailing',
    ],
)
def test_edge_cases_agree(value: bytes) -> None:
    _same(value)


def test_the_usual_request_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import consumers.predictor.fastrequest as fr

    def careful(*_: Any) -> Request | str:
        raise AssertionError("the careful path was taken")

    monkeypatch.setattr(fr, "decode_careful", careful)
    at = datetime(2026, 12, 2, 18, 4, 5, 123456, tzinfo=UTC)
    value = PredictionRequest(
        id="r-1", model_id="lead-v1", unit_id="lead-42", input={"visits": 3}, occurred_at=at
    ).model_dump_json()
    request = fr.decode(value.encode(), TOPIC, PARTITION, OFFSET)
    assert isinstance(request, Request)
    assert (request.id, request.model_id, request.unit_id, request.occurred_at) == (
        "r-1",
        "lead-v1",
        "lead-42",
        at,
    )
    assert request.routing_unit == "lead-42"
