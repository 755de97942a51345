"""Result records built on the hot path stay exactly the shared contract."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from consumers.predictor.results import (
    MAX_RESULT_BYTES,
    ResultWriter,
    error_record,
    failed_result,
    fast_result_id,
    too_large_result,
)
from consumers.predictor.work import Work
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


def _work(output: object) -> Work:
    from registry.core.predictions import PredictionRequest

    request = PredictionRequest(id="r-9", model_id="lead-v1", input={"visits": 1}, unit_id="u")
    return Work(_record(b"{}"), request, None, t0=1.0, output=output, done_at=1.25)


def test_a_result_never_exceeds_the_limit() -> None:
    writer = ResultWriter("2026-01-01T00:00:00+00:00")
    small = writer.record(_work({"label": 1}))
    ok = PredictionResult.model_validate_json(small.value)
    assert ok.output == {"label": 1}
    assert ok.latency_ms == 250.0
    w = _work({"text": "x" * MAX_RESULT_BYTES})
    big = writer.record(w)
    assert len(big.value) < 2000
    result = PredictionResult.model_validate_json(big.value)
    assert result.output is None
    assert result.error is not None
    assert result.error.code == "ProviderBadResponse"
    assert "over the limit" in result.error.message
    assert w.failure is not None  # counted as an error
    odd = writer.record(_work({"n": 2**70}))  # beyond what JSON encoding here takes
    assert PredictionResult.model_validate_json(odd.value).error is not None


def test_a_result_the_broker_refuses_is_replaced_by_a_small_error_result() -> None:
    writer = ResultWriter("2026-01-01T00:00:00+00:00")
    out = writer.record(_work({"label": 1, "blob": "y" * 5000}))
    small = too_large_result(out)
    result = PredictionResult.model_validate_json(small.value)
    assert (result.request_id, result.id) == ("r-9", result_id("r-9"))
    assert result.error is not None
    assert result.error.code == "ProviderBadResponse"
    assert result.output is None
    assert result.unit_id == "u"
    assert len(small.value) < 1000


def test_an_oversized_request_is_read_for_its_id_only_up_to_eight_times_the_limit() -> None:
    raw = orjson.dumps({"id": "r-big", "model_id": "m", "input": "z" * 3000})
    now = "2026-01-01T00:00:00+00:00"
    assert error_record(_record(raw), "too big", now, max_bytes=1000) is not None
    assert error_record(_record(raw), "too big", now, max_bytes=300) is None  # 8 x 300 < size
    deep = b'{"id": "r-deep", "input": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert error_record(_record(deep), "too deep", now) is None  # unparseable here: the DLQ


def test_a_minimal_error_result_when_a_result_cannot_be_built() -> None:
    out = failed_result(_work(None), "ProviderFailed", "internal error", "2026-01-01T00:00:00Z")
    result = PredictionResult.model_validate_json(out.value)
    assert result.error is not None
    assert (result.request_id, result.error.code) == ("r-9", "ProviderFailed")
