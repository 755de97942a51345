"""The decider refuses a provider configuration that can never serve, naming the field.

Two halves: the rules (``decide``) on RegisterModel, ReleaseVersion and UpdateConfig; and
the table held to the providers themselves: what the decider accepts builds a provider in
the prediction consumer's factory, and what it refuses for a missing setting or credential
is what the provider refuses too (so the table cannot drift from the providers unnoticed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.errors import PredictionFailure
from consumers.providers.base import BrokenProvider
from consumers.providers.factory import ProviderFactory
from registry.core.errors import Rejection
from registry.core.messages import (
    ConfigChanges,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.provider_checks import PROVIDER_SETTINGS, provider_problem
from registry.core.rules import decide
from registry.core.state import RegistryState
from registry.core.types import ModelConfig, Provider, ProviderConfig
from registry.infra.settings import GrantSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST = "ab" * 32
KEY = "env:MODEL_SECRET_KEY"

# The least each provider needs: every one of these is accepted, and builds.
MINIMAL: dict[Provider, dict[str, Any]] = {
    Provider.CUSTOM: {"callable": "tests.consumers.custom_models:score"},
    Provider.SCIKIT_LEARN: {"modelPath": "m.skops", "modelSha256": DIGEST},
    Provider.PYTORCH: {
        "modelPath": "m.pt",
        "modelSha256": DIGEST,
        "architecture": "tests.consumers.custom_models:score",
    },
    Provider.TENSORFLOW: {"modelPath": "m.keras", "modelSha256": DIGEST},
    Provider.OPENAI: {"model": "gpt-4o-mini"},
    Provider.ANTHROPIC: {"model": "claude-sonnet-4-5", "credentials": {"apiKey": KEY}},
    Provider.AZURE_ML: {
        "endpoint": "https://lead.westeurope.inference.ml.azure.com/score",
        "credentials": {"apiKey": KEY},
    },
    Provider.AWS_SAGEMAKER: {
        "endpointName": "lead-scoring",
        "credentials": {"accessKeyId": KEY, "secretAccessKey": KEY, "region": "us-east-1"},
    },
}

# (provider, what is taken out of its minimal config, the field the rejection names)
MISSING: list[tuple[Provider, str, str]] = [
    (Provider.CUSTOM, "callable", "providerConfig.callable"),
    (Provider.SCIKIT_LEARN, "modelPath", "providerConfig.modelPath"),
    (Provider.PYTORCH, "modelPath", "providerConfig.modelPath"),
    (Provider.TENSORFLOW, "modelPath", "providerConfig.modelPath"),
    (Provider.TENSORFLOW, "modelSha256", "providerConfig.modelSha256"),
    (Provider.OPENAI, "model", "providerConfig.model"),
    (Provider.ANTHROPIC, "model", "providerConfig.model"),
    (Provider.ANTHROPIC, "credentials", "providerConfig.credentials.apiKey"),
    (Provider.AZURE_ML, "endpoint", "providerConfig.endpoint"),
    (Provider.AZURE_ML, "credentials", "providerConfig.credentials.apiKey"),
    (Provider.AWS_SAGEMAKER, "endpointName", "providerConfig.endpointName"),
    (Provider.AWS_SAGEMAKER, "credentials", "providerConfig.region"),
]


def _config(provider: Provider | str, pc: dict[str, Any] | None, **top: Any) -> ModelConfig:
    data: dict[str, Any] = {
        "id": "m",
        "name": "M",
        "version": "1.0.0",
        "type": "classification",
        "provider": str(provider),
        **top,
    }
    if pc is not None:
        data["providerConfig"] = {"provider": str(provider), **pc}
    return ModelConfig.model_validate(data)


def _register(config: ModelConfig) -> Rejection | None:
    decision = decide(RegisterModel(model_id="m", payload=config), RegistryState(), now=T0)
    return decision if isinstance(decision, Rejection) else None


def _registered(config: ModelConfig) -> RegistryState:
    state = RegistryState()
    decision = decide(RegisterModel(model_id="m", payload=config), state, now=T0)
    assert not isinstance(decision, Rejection), decision
    for event in decision:
        state.apply_event(event)
    return state


def _without(pc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in pc.items() if k != key}


@pytest.mark.parametrize("provider", list(Provider))
def test_each_providers_minimal_config_is_accepted(provider: Provider) -> None:
    assert _register(_config(provider, MINIMAL[provider])) is None


@pytest.mark.parametrize(("provider", "key", "field"), MISSING)
def test_what_a_provider_cannot_work_without_is_refused_naming_the_field(
    provider: Provider, key: str, field: str
) -> None:
    rejection = _register(_config(provider, _without(MINIMAL[provider], key)))
    assert rejection is not None, (provider, key)
    assert rejection.code == "InvalidCommand"
    assert rejection.field == field
    assert field.removeprefix("providerConfig.") in rejection.message


def test_a_model_without_provider_config_is_a_catalogue_entry() -> None:
    for provider in Provider:
        assert _register(_config(provider, None)) is None


def test_the_top_level_provider_must_be_the_provider_configs() -> None:
    config = ModelConfig.model_validate(
        {
            "id": "m",
            "name": "M",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "openai",
            "providerConfig": {"provider": "anthropic", **MINIMAL[Provider.ANTHROPIC]},
        }
    )
    rejection = _register(config)
    assert rejection is not None
    assert rejection.field == "providerConfig.provider"
    assert "anthropic" in rejection.message
    assert "openai" in rejection.message


def test_the_models_top_level_endpoint_and_credentials_count() -> None:
    pc = _without(_without(MINIMAL[Provider.AZURE_ML], "endpoint"), "credentials")
    top = {"endpoint": MINIMAL[Provider.AZURE_ML]["endpoint"], "credentials": {"key": KEY}}
    assert _register(_config(Provider.AZURE_ML, pc, **top)) is None
    region_in_settings = {
        "endpointName": "lead",
        "region": "eu-west-1",
        "credentials": {"accessKeyId": KEY, "secretAccessKey": KEY},
    }
    assert _register(_config(Provider.AWS_SAGEMAKER, region_in_settings)) is None
    rejection = _register(
        _config(Provider.AWS_SAGEMAKER, {**region_in_settings, "credentials": {"accessKeyId": KEY}})
    )
    assert rejection is not None
    assert rejection.field == "providerConfig.credentials.secretAccessKey"


@pytest.mark.parametrize(
    ("provider", "typo", "meant"),
    [
        (Provider.CUSTOM, "callabel", "callable"),
        (Provider.SCIKIT_LEARN, "modelpath", "modelPath"),
        (Provider.SCIKIT_LEARN, "modelSha265", "modelSha256"),
        (Provider.OPENAI, "systemPromt", "systemPrompt"),
        (Provider.ANTHROPIC, "maxTokns", "maxTokens"),
        (Provider.AWS_SAGEMAKER, "regoin", "region"),
        (Provider.AZURE_ML, "timeoutSec", "timeoutS"),
    ],
)
def test_a_misspelt_setting_is_refused_with_the_suggestion(
    provider: Provider, typo: str, meant: str
) -> None:
    pc = {**MINIMAL[provider], typo: "x"}
    if meant in pc:  # the misspelling stands in for the setting
        pc = _without(pc, meant)
        if meant == "callable":
            pc[typo] = "tests.consumers.custom_models:score"
    rejection = _register(_config(provider, pc))
    assert rejection is not None, (provider, typo)
    assert rejection.field == f"providerConfig.{typo}"
    assert f"did you mean {meant}?" in rejection.message


def test_a_setting_the_provider_does_not_read_is_refused_and_named() -> None:
    """Contract 1.1: providerConfig is closed per provider, in the decider as in the schema."""
    for provider in Provider:
        for extra in ("owner", "notes", "topP"):
            rejection = _register(_config(provider, {**MINIMAL[provider], extra: "x"}))
            assert rejection is not None, (provider, extra)
            assert rejection.field == f"providerConfig.{extra}"
            assert f"{provider} models read:" in rejection.message
    # a near miss of a setting that is also present is still not a setting
    rejection = _register(_config(Provider.OPENAI, {"model": "gpt-4o-mini", "models": ["a"]}))
    assert rejection is not None
    assert rejection.field == "providerConfig.models"


def test_an_unknown_setting_whose_name_looks_like_a_secret_is_not_echoed() -> None:
    secret_name = "sk-" + "a1B2" * 10
    rejection = _register(_config(Provider.CUSTOM, {**MINIMAL[Provider.CUSTOM], secret_name: 1}))
    assert rejection is not None
    assert secret_name not in rejection.message
    assert rejection.field == "providerConfig"


@pytest.mark.parametrize(
    ("provider", "setting", "value", "says"),
    [
        (Provider.OPENAI, "model", 4, "a string"),
        (Provider.OPENAI, "api", "completions", "'chat', 'embeddings'"),
        (Provider.OPENAI, "temperature", "hot", "a number"),
        (Provider.CUSTOM, "batch", "yes", "true or false"),
        (Provider.SCIKIT_LEARN, "features", "a,b", "a list"),
        (Provider.SCIKIT_LEARN, "modelPath", "../../etc/m.skops", "'..'"),
        (Provider.AZURE_ML, "batchSize", 0, ">= 1"),
        (Provider.ANTHROPIC, "timeoutS", True, "a number"),
        (Provider.ANTHROPIC, "maxConcurrency", 0, ">= 1"),
    ],
)
def test_a_setting_of_the_wrong_type_is_refused(
    provider: Provider, setting: str, value: Any, says: str
) -> None:
    rejection = _register(_config(provider, {**MINIMAL[provider], setting: value}))
    assert rejection is not None, (provider, setting, value)
    assert rejection.field == f"providerConfig.{setting}"
    assert says in rejection.message


def _update(state: RegistryState, **changes: Any) -> Rejection | None:
    payload = UpdateConfigPayload(changes=ConfigChanges.model_validate(changes))
    decision = decide(UpdateConfig(model_id="m", payload=payload), state, now=T0)
    return decision if isinstance(decision, Rejection) else None


def _release(state: RegistryState, **changes: Any) -> Rejection | None:
    payload = ReleaseVersionPayload(version="1.1.0", changes=ConfigChanges.model_validate(changes))
    decision = decide(ReleaseVersion(model_id="m", payload=payload), state, now=T0)
    return decision if isinstance(decision, Rejection) else None


@pytest.mark.parametrize("change", [_update, _release])
def test_updates_and_releases_check_the_config_as_it_would_be(change: Any) -> None:
    azure = MINIMAL[Provider.AZURE_ML]
    state = _registered(
        _config(Provider.AZURE_ML, _without(azure, "endpoint"), endpoint=azure["endpoint"])
    )
    # the model's provider with the new providerConfig
    wrong = {"provider": "openai", "model": "gpt-4o-mini"}
    rejection = change(state, providerConfig=wrong)
    assert rejection is not None
    assert rejection.field == "providerConfig.provider"
    rejection = change(state, providerConfig={"provider": "azure-ml", "deploymnt": "blue"})
    assert rejection is not None
    assert rejection.field == "providerConfig.deploymnt"
    rejection = change(state, providerConfig={"provider": "azure-ml", "deployment": "blue"})
    assert rejection is not None  # the new providerConfig has no credentials
    assert rejection.field == "providerConfig.credentials.apiKey"
    # the model's endpoint still counts, and credentials given in the same change count
    assert change(state, providerConfig={**azure, "provider": "azure-ml", "endpoint": None}) is None
    keyed = {"provider": "azure-ml", "deployment": "blue"}
    assert change(state, providerConfig=keyed, credentials={"apiKey": KEY}) is None


def test_provider_problem_without_a_top_level_provider_checks_the_config_alone() -> None:
    pc = ProviderConfig.model_validate({"provider": "custom"})
    rejection = provider_problem(pc)
    assert rejection is not None
    assert rejection.field == "providerConfig.callable"
    assert provider_problem(None, Provider.CUSTOM) is None


# ------------------------------------------------------------------ the table vs the providers


@pytest.fixture
def factory(tmp_path: Path) -> ProviderFactory:
    grants = GrantSettings(
        callables=("tests.consumers.custom_models:score",),
        model_roots=(tmp_path,),
        allow_pickle=True,
    )
    return ProviderFactory(grants=grants)


def test_every_provider_has_a_row_and_a_minimal_config() -> None:
    assert set(PROVIDER_SETTINGS) == set(Provider) == set(MINIMAL)


@pytest.mark.parametrize("provider", list(Provider))
async def test_what_the_decider_accepts_the_provider_builds(
    provider: Provider, factory: ProviderFactory
) -> None:
    built = factory.create(_config(provider, MINIMAL[provider]))
    try:
        assert not isinstance(built, BrokenProvider), getattr(built, "failure", None)
    finally:
        await built.aclose()


@pytest.mark.parametrize(("provider", "key", "field"), MISSING)
async def test_what_the_decider_refuses_the_provider_cannot_serve(
    provider: Provider, key: str, field: str, factory: ProviderFactory
) -> None:
    built = factory.create(_config(provider, _without(MINIMAL[provider], key)))
    try:
        if isinstance(built, BrokenProvider):
            failure = built.failure
        else:  # credentials are resolved at call time, before anything is sent
            (failure,) = await built.predict_batch([{"text": "hello"}])
        assert isinstance(failure, PredictionFailure), failure
        assert failure.code in {"ProviderConfigInvalid", "CredentialUnavailable"}, failure
    finally:
        await built.aclose()
