"""The predictor warns when predictions come faster than the embedded broker holds for long."""

from __future__ import annotations

import logging
import time

import pytest

from consumers.predictor import PredictionConsumer
from registry.infra.kafka.traits import BrokerTraits
from registry.infra.settings import Settings


def _consumer() -> PredictionConsumer:
    return PredictionConsumer(Settings(bootstrap_servers="127.0.0.1:1"))


def test_only_the_embedded_broker_has_a_sustained_limit() -> None:
    assert BrokerTraits(kafka=True).sustained_requests_per_s is None
    assert (BrokerTraits(kafka=False).sustained_requests_per_s or 0) > 0


def test_a_minute_above_the_sustained_rate_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer()
    caplog.set_level(logging.WARNING, logger="consumers.predictor.consumer")
    consumer._load_mark = (time.monotonic() - 61.0, 0)
    consumer.stats.records = 61 * 500
    consumer._check_load(200)
    assert "the embedded broker holds about 200/s" in caplog.text
    caplog.clear()
    consumer._load_mark = (time.monotonic() - 61.0, consumer.stats.records)
    consumer.stats.records += 61 * 500
    consumer._check_load(200)  # again within 10 minutes: quiet
    assert caplog.text == ""


def test_a_load_within_the_rate_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer()
    caplog.set_level(logging.WARNING, logger="consumers.predictor.consumer")
    consumer._load_mark = (time.monotonic() - 61.0, 0)
    consumer.stats.records = 61 * 150
    consumer._check_load(200)
    assert caplog.text == ""
