"""Result records built on the hot path stay exactly the shared contract."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from consumers.predictor.results import error_record, fast_result_id
from registry.core.predictions import PredictionResult, result_id


@given(st.text(min_size=1, max_size=128))
def test_fast_result_id_is_the_contracts_uuid5(request_id: str) -> None:
    assert fast_result_id(request_id) == result_id(request_id)


def _record(value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t.predictions.requests", 3, 17, 0, 0, b"lead-1", value, None, 0, 0, [])


def test_an_unreadable_request_with_a_readable_id_gets_an_error_result() -> None:
    raw = orjson.dumps(
        {"id": "r-1", "model_id": "x" * 400, "unit_id": "lead-1", "correlation_id": "c", "extra": 1}
    )
    out = error_record(
        _record(raw), "invalid PredictionRequest: extra: not permitted", "2026-01-01T00:00:00+00:00"
    )
    assert out is not None
    assert (out.key, out.source_partition, out.request_id) == (b"lead-1", 3, "r-1")
    result = PredictionResult.model_validate_json(out.value)
    assert result.id == result_id("r-1")
    assert result.variant == "none"
    assert result.output is None
    assert result.error is not None
    assert result.error.code == "InvalidRequest"
    assert len(result.requested_model_id) == 256
    assert result.unit_id == "lead-1"
    assert result.correlation_id == "c"


def test_no_error_result_without_a_readable_id() -> None:
    for value in (
        None,
        b"\xff",
        b"[1]",
        b'{"model_id": "m"}',
        b'{"id": 5}',
        orjson.dumps({"id": "x" * 129}),
    ):
        assert error_record(_record(value), "bad", "2026-01-01T00:00:00+00:00") is None
