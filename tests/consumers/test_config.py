"""PredictorConfig from PREDICTOR_* variables."""

from __future__ import annotations

import pytest

from consumers.predictor import PredictorConfig


def test_environment_variables_are_read_and_typed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PREDICTOR_MAX_BATCH", "10")
    clean_env.setenv("PREDICTOR_MOCK_FALLBACK", "yes")
    clean_env.setenv("PREDICTOR_CACHE_TTL_S", "1.5")
    clean_env.setenv("PREDICTOR_ASSIGNMENT", "all")
    clean_env.setenv("PREDICTOR_BREAKER_THRESHOLD", "3")
    config = PredictorConfig.from_env(group_id="other")
    assert (config.max_batch, config.mock_fallback, config.cache_ttl_s) == (10, True, 1.5)
    assert (config.assignment, config.group_id) == ("all", "other")
    assert config.call_policy.breaker_threshold == 3
    assert PredictorConfig.from_env(max_batch=7).max_batch == 7  # overrides win


def test_defaults_without_variables(clean_env: pytest.MonkeyPatch) -> None:
    assert PredictorConfig.from_env() == PredictorConfig()


def test_bad_values_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="assignment"):
        PredictorConfig(assignment="some")
    with pytest.raises(ValueError, match="max_batch"):
        PredictorConfig(max_batch=0)
    clean_env.setenv("PREDICTOR_MAX_BATCH", "many")
    with pytest.raises(ValueError, match="PREDICTOR_MAX_BATCH must be an integer"):
        PredictorConfig.from_env()
