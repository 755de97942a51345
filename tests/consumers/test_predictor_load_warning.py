"""The predictor warns when the embedded broker has carried enough predictions to slow down."""

from __future__ import annotations

import logging

import pytest

from consumers.predictor import PredictionConsumer
from registry.infra.kafka.traits import BrokerTraits
from registry.infra.settings import Settings


def _consumer(limit: int | None) -> PredictionConsumer:
    consumer = PredictionConsumer(Settings(bootstrap_servers="127.0.0.1:1"))
    consumer._load_first = consumer._load_limit = limit
    return consumer


def test_only_the_embedded_broker_has_a_limit() -> None:
    assert BrokerTraits(kafka=True).requests_before_slowdown is None
    assert (BrokerTraits(kafka=False).requests_before_slowdown or 0) > 0


def test_warns_past_the_limit_then_at_each_tenfold(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer(10_000)
    caplog.set_level(logging.WARNING, logger="consumers.predictor.consumer")
    consumer.stats.records = 9_999
    consumer._check_load()
    assert caplog.text == ""
    consumer.stats.records = 10_000
    consumer._check_load()
    assert "read 10000 requests from the embedded broker" in caplog.text
    assert "from about 10000 requests on" in caplog.text
    caplog.clear()
    consumer.stats.records = 50_000
    consumer._check_load()
    assert caplog.text == ""  # the next warning is at 100,000
    consumer.stats.records = 100_000
    consumer._check_load()
    assert "read 100000 requests" in caplog.text
    assert "from about 10000 requests on" in caplog.text  # where it began, not the next mark


def test_no_limit_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer(None)
    caplog.set_level(logging.WARNING, logger="consumers.predictor.consumer")
    consumer.stats.records = 10**9
    consumer._check_load()
    assert caplog.text == ""
