"""Value types: semver order, metric ranges, camelCase/snake_case, the secrets rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from registry.core.errors import SecretInConfig, describe_validation_error
from registry.core.types import Metrics, ModelConfig, SemVer


def test_semver_orders_by_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.9.0",
        "1.10.0",
        "2.0.0",
    ]
    parsed = [SemVer(v) for v in ordered]
    assert parsed == sorted(reversed(parsed))
    assert SemVer("1.0.0+build.5") == SemVer("1.0.0")
    for bad in ("1.0", "01.0.0", "1.0.0-", "v1.0.0", ""):
        with pytest.raises(ValueError, match="semantic version"):
            SemVer(bad)


@given(
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
)
def test_semver_agrees_with_tuple_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va, vb = SemVer("{}.{}.{}".format(*a)), SemVer("{}.{}.{}".format(*b))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
    assert str(va) == "{}.{}.{}".format(*a)


def test_metrics_ranges() -> None:
    assert Metrics.model_validate({"f1Score": 87.1, "mse": 12500}).f1_score == 87.1
    with pytest.raises(ValidationError):
        Metrics(accuracy=101)
    with pytest.raises(ValidationError):
        Metrics(mae=-1)


def test_config_accepts_camel_and_snake_and_emits_camel() -> None:
    camel = {
        "id": "m",
        "name": "M",
        "version": "1.0.0",
        "type": "nlp",
        "provider": "openai",
        "providerConfig": {"provider": "openai", "model": "gpt-4o-mini"},
        "lastTrained": "2026-01-02T00:00:00Z",
    }
    snake = dict(camel, provider_config=camel["providerConfig"], last_trained=camel["lastTrained"])
    del snake["providerConfig"], snake["lastTrained"]
    a, b = ModelConfig.model_validate(camel), ModelConfig.model_validate(snake)
    assert a == b
    assert "providerConfig" in a.wire()
    assert "lastTrained" in a.wire()
    assert a.provider_config is not None
    assert a.provider_config.settings == {"model": "gpt-4o-mini"}


@pytest.mark.parametrize(
    ("field", "config"),
    [
        ("credentials.apiKey", {"credentials": {"apiKey": "SECRETVALUE123"}}),
        (
            "providerConfig.credentials.secretAccessKey",
            {
                "providerConfig": {
                    "provider": "aws-sagemaker",
                    "credentials": {"secretAccessKey": "SECRETVALUE123", "region": "us-east-1"},
                }
            },
        ),
        (
            "providerConfig.apiKey",
            {"providerConfig": {"provider": "openai", "apiKey": "SECRETVALUE123"}},
        ),
        ("parameters.auth.token", {"parameters": {"auth": {"token": "SECRETVALUE123"}}}),
        ("endpoint", {"endpoint": "https://user:SECRETVALUE123@example.test/score"}),
    ],
)
def test_raw_secrets_are_rejected_naming_the_field_not_the_value(
    field: str, config: dict[str, object]
) -> None:
    base = {"id": "m", "name": "M", "version": "1.0.0", "type": "nlp", "provider": "openai"}
    with pytest.raises(SecretInConfig) as info:
        ModelConfig.model_validate({**base, **config})
    assert info.value.field == field
    assert "SECRETVALUE123" not in str(info.value)


def test_references_are_accepted() -> None:
    cfg = ModelConfig.model_validate(
        {
            "id": "m",
            "name": "M",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "openai",
            "credentials": {"apiKey": "env:OPENAI_API_KEY", "cert": "file:/run/secrets/cert"},
            "providerConfig": {"provider": "openai", "apiKey": "env:OPENAI_API_KEY"},
        }
    )
    assert cfg.credentials == {"apiKey": "env:OPENAI_API_KEY", "cert": "file:/run/secrets/cert"}


def test_settings_that_only_look_secret_are_accepted() -> None:
    cfg = ModelConfig.model_validate(
        {
            "id": "m",
            "name": "M",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "anthropic",
            "providerConfig": {
                "provider": "anthropic",
                "model": "claude",
                "maxTokens": 256,
                "tokenizer": "cl100k",
            },
        }
    )
    assert cfg.provider_config is not None
    assert cfg.provider_config.settings["maxTokens"] == 256


def test_validation_errors_never_echo_the_input() -> None:
    with pytest.raises(ValidationError) as info:
        ModelConfig.model_validate(
            {"id": "m", "name": 12345678, "version": "1.0.0", "type": "nlp", "provider": "openai"}
        )
    assert "12345678" in str(info.value)  # pydantic's own text quotes the input...
    message, field = describe_validation_error(info.value)
    assert "12345678" not in message
    assert field == "name"
