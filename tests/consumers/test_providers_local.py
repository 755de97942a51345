"""Local providers (scikit-learn, custom, pytorch/tensorflow), the factory, the call policy."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from consumers.errors import (
    InvalidInput,
    PredictionFailure,
    ProviderBadResponse,
    ProviderConfigInvalid,
    ProviderFailed,
    ProviderNotInstalled,
    ProviderTimeout,
    ProviderUnavailable,
)
from consumers.providers import BrokenProvider, CallPolicy, ProviderFactory, mock_output
from consumers.providers.base import CircuitBreaker, ProviderSpec
from registry.core.types import ModelConfig, ModelType
from registry.infra.settings import GrantSettings
from tests.consumers import custom_models
from tests.consumers.conftest import (
    FEATURES,
    UNKNOWN_DIGEST,
    custom_config,
    grants_for,
    lead_input,
    sklearn_config,
)

FAST = CallPolicy(timeout_s=0.2, retries=2, backoff_s=0.001, concurrency=8)


def _factory(*model_roots: Path) -> ProviderFactory:
    """A factory granting the test callables and ``model_roots`` (pickles allowed)."""
    return ProviderFactory(FAST, grants=grants_for(*model_roots))


def _roots(lead_models: dict[str, Path]) -> Path:
    return lead_models["champion"].parent


def _config(provider: str, **pc: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": f"{provider}-model",
            "name": "m",
            "version": "1.0.0",
            "type": pc.pop("type", "classification"),
            "provider": provider,
            "status": "active",
            "providerConfig": {"provider": provider, **pc},
        }
    )


# --------------------------------------------------------------------------- scikit-learn


async def test_sklearn_classifier_predicts_a_batch_with_probabilities(
    lead_models: dict[str, Path],
) -> None:
    import joblib
    import numpy as np

    provider = _factory(_roots(lead_models)).get_provider(
        sklearn_config("lead-v1", lead_models["champion"])
    )
    inputs = [lead_input(i) for i in range(50)]
    outputs = await provider.predict_batch(inputs)
    reference = joblib.load(lead_models["champion"]).predict_proba(
        np.array([[x[f] for f in FEATURES] for x in inputs], dtype=float)
    )
    for out, probs in zip(outputs, reference, strict=True):
        assert out["label"] == int(probs.argmax())
        assert out["score"] == pytest.approx(probs[1])
        assert out["probabilities"] == pytest.approx({"0": probs[0], "1": probs[1]})


async def test_sklearn_regressor_and_list_inputs(lead_models: dict[str, Path]) -> None:
    provider = _factory(_roots(lead_models)).get_provider(
        sklearn_config("rev-v1", lead_models["regressor"], type="regression")
    )
    (by_name, by_list) = await provider.predict_batch(
        [lead_input(3), [lead_input(3)[f] for f in FEATURES]]
    )
    assert by_name == by_list
    assert by_name["value"] == pytest.approx(lead_input(3)["budget_k"] * 3.0 + 10)


async def test_sklearn_bad_inputs_fail_alone(lead_models: dict[str, Path]) -> None:
    provider = _factory(_roots(lead_models)).get_provider(
        sklearn_config("lead-v1", lead_models["champion"])
    )
    good = lead_input(1)
    missing = {k: v for k, v in good.items() if k != "visits"}
    text = {**good, "visits": "many"}
    boolean = {**good, "visits": True}
    outputs = await provider.predict_batch([good, missing, text, boolean, "just text", [1.0, 2.0]])
    assert "label" in outputs[0]
    for out in outputs[1:5]:
        assert isinstance(out, InvalidInput)
    assert "visits" in outputs[1].message
    assert isinstance(outputs[5], InvalidInput)
    assert "takes 4 features, got 2" in outputs[5].message


async def test_sklearn_missing_file_and_missing_setting(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    provider = factory.get_provider(sklearn_config("lead-v1", tmp_path / "nope.joblib"))
    outputs = await provider.predict_batch([lead_input(1), lead_input(2)])
    assert all(
        isinstance(o, ProviderConfigInvalid) and "does not exist" in o.message for o in outputs
    )
    no_path = factory.get_provider(_config("scikit-learn"))
    assert isinstance(no_path, BrokenProvider)
    (out,) = await no_path.predict_batch([lead_input(1)])
    assert isinstance(out, ProviderConfigInvalid)
    assert "modelPath" in out.message


async def test_sklearn_file_without_an_estimator(tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "not-a-model.joblib"
    joblib.dump({"weights": [1, 2]}, path)
    (out,) = (
        await _factory(tmp_path)
        .get_provider(sklearn_config("lead-v1", path))
        .predict_batch([lead_input(1)])
    )
    assert isinstance(out, ProviderConfigInvalid)
    assert "no estimator" in out.message


# --------------------------------------------------------------------------- custom


async def test_custom_sync_async_and_batch_functions() -> None:
    factory = _factory()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("score", {}),
        ("async_score", {}),
        ("batch_score", {"batch": True}),
    ]
    for name, extra in cases:
        provider = factory.get_provider(
            custom_config(
                f"rules-{name.replace('_', '-')}", f"tests.consumers.custom_models:{name}", **extra
            )
        )
        outputs = await provider.predict_batch([{"visits": 6}, {"visits": 1, "emails_opened": 1}])
        assert outputs == [{"label": 1, "score": 0.6}, {"label": 0, "score": 0.15}], name


async def test_custom_failures_are_typed() -> None:
    factory = _factory()
    score = factory.get_provider(custom_config("rules", "tests.consumers.custom_models:score"))
    (bad,) = await score.predict_batch([{"no": "visits"}])
    assert isinstance(bad, InvalidInput)
    crash = factory.get_provider(custom_config("crash", "tests.consumers.custom_models:crashes"))
    (out,) = await crash.predict_batch([{}])
    assert isinstance(out, ProviderFailed)
    assert "ValueError: boom" in out.message
    wrong = factory.get_provider(
        custom_config("wrong", "tests.consumers.custom_models:batch_wrong_length", batch=True)
    )
    assert all(isinstance(o, ProviderBadResponse) for o in await wrong.predict_batch([{}, {}]))


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("no_colon_here", "not granted"),  # could be an entry point's name: there is none
        ("tests.consumers.no_such_module:f", "not granted"),
        ("tests.consumers.custom_models:missing", "not granted"),
        ("tests.consumers.custom_models:NOT_CALLABLE", "not callable"),
    ],
)
async def test_custom_bad_callable_names(target: str, words: str) -> None:
    provider = _factory().get_provider(custom_config("rules", target))
    assert isinstance(provider, BrokenProvider)
    (out,) = await provider.predict_batch([{}])
    assert isinstance(out, ProviderConfigInvalid)
    assert words in out.message


async def test_transient_failures_are_retried() -> None:
    custom_models.CALLS.clear()
    provider = _factory().get_provider(
        custom_config("flaky", "tests.consumers.custom_models:flaky")
    )
    outputs = await provider.predict_batch([{"key": "a"}, {"key": "b"}])
    assert outputs == [{"label": 1, "attempts": 3}, {"label": 1, "attempts": 3}]  # 2 retries each
    custom_models.CALLS.clear()
    once = ProviderFactory(
        CallPolicy(retries=1, backoff_s=0.001), grants=grants_for()
    ).get_provider(custom_config("flaky", "tests.consumers.custom_models:flaky"))
    (out,) = await once.predict_batch([{"key": "c"}])
    assert isinstance(out, ProviderUnavailable)


async def test_async_calls_time_out() -> None:
    provider = _factory().get_provider(custom_config("slow", "tests.consumers.custom_models:slow"))
    outputs = await provider.predict_batch([{}, {}])
    assert all(isinstance(o, ProviderTimeout) and o.transient for o in outputs)


async def test_policy_overrides_from_provider_config() -> None:
    config = custom_config(
        "slow", "tests.consumers.custom_models:slow", timeoutS=0.05, retries=0, maxConcurrency=3
    )
    provider = _factory().get_provider(config)
    assert provider.spec.policy.timeout_s == 0.05
    assert provider.spec.policy.retries == 0
    assert provider.spec.policy.concurrency == 3
    broken = _factory().get_provider(
        custom_config("slow", "tests.consumers.custom_models:slow", timeoutS="fast")
    )
    assert isinstance(broken, BrokenProvider)
    assert "timeoutS" in broken.failure.message


# --------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_a_run_of_failures_and_half_opens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record(False)
    breaker.record(True)  # a success resets the run
    for _ in range(2):
        breaker.record(False)
    assert breaker.retry_in() == 0
    breaker.record(False)
    assert breaker.retry_in() == 10
    now[0] = 10.0
    assert breaker.retry_in() == 0  # half-open: one call may try
    breaker.record(False)
    assert breaker.retry_in() == 10  # ... and one failure reopens at once


async def test_an_outage_costs_one_timeout_not_one_per_request() -> None:
    policy = CallPolicy(
        timeout_s=0.05,
        retries=0,
        backoff_s=0.001,
        concurrency=4,
        breaker_threshold=4,
        breaker_cooldown_s=60,
    )
    provider = ProviderFactory(policy, grants=grants_for()).get_provider(
        custom_config("slow", "tests.consumers.custom_models:slow")
    )
    outputs = await provider.predict_batch([{}] * 40)
    timeouts = sum(isinstance(o, ProviderTimeout) for o in outputs)
    paused = [o for o in outputs if isinstance(o, ProviderUnavailable)]
    assert timeouts == 4
    assert len(paused) == 36
    assert "paused" in paused[0].message


# --------------------------------------------------------------------------- optional frameworks


@pytest.mark.parametrize(
    ("provider", "module"), [("pytorch", "torch"), ("tensorflow", "tensorflow")]
)
async def test_optional_frameworks_fail_cleanly_when_absent(
    provider: str, module: str, tmp_path: Path
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    built = _factory(tmp_path).get_provider(
        _config(provider, modelPath=str(tmp_path / "model.bin"), modelSha256=UNKNOWN_DIGEST)
    )
    (out,) = await built.predict_batch([[1.0, 2.0]])
    assert isinstance(out, ProviderNotInstalled)
    assert f"model-registry[{'torch' if module == 'torch' else 'tensorflow'}]" in out.message


async def test_pytorch_model_when_installed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from consumers.providers.files import file_digest

    weights = tmp_path / "linear.pt"  # a state dict, loaded weights-only
    torch.save(custom_models.linear_2_1().state_dict(), weights)
    factory = ProviderFactory(
        FAST,
        grants=GrantSettings(
            callables=("tests.consumers.custom_models:linear_2_1",), model_roots=(tmp_path,)
        ),
    )
    provider = factory.get_provider(
        _config(
            "pytorch",
            type="regression",
            modelPath=str(weights),
            modelSha256=file_digest(weights),
            architecture="tests.consumers.custom_models:linear_2_1",
        )
    )
    outputs = await provider.predict_batch([[1.0, 2.0], "bad"])
    assert len(outputs[0]["prediction"]) == 1
    assert isinstance(outputs[1], InvalidInput)
    script = tmp_path / "linear.torchscript"  # carries code: only with pickles allowed
    torch.jit.save(torch.jit.script(custom_models.linear_2_1()), str(script))
    config = _config(
        "pytorch", type="regression", modelPath=str(script), modelSha256=file_digest(script)
    )
    refused = factory.get_provider(config)
    assert isinstance(refused, BrokenProvider)
    assert "REGISTRY_GRANTS_ALLOW_PICKLE" in refused.failure.message
    allowed = _factory(tmp_path).get_provider(config)
    (out,) = await allowed.predict_batch([[1.0, 2.0]])
    assert len(out["prediction"]) == 1


# --------------------------------------------------------------------------- factory + mock


async def test_factory_reuses_a_provider_until_its_config_changes(
    lead_models: dict[str, Path],
) -> None:
    factory = _factory(_roots(lead_models))
    v1 = sklearn_config("lead-v1", lead_models["champion"])
    provider = factory.get_provider(v1)
    assert factory.get_provider(v1) is provider
    same_again = ModelConfig.model_validate(
        v1.wire() | {"description": "new words", "status": "active"}
    )
    assert (
        factory.get_provider(same_again) is provider
    )  # description/status do not matter to a provider
    v2 = ModelConfig.model_validate(v1.wire() | {"version": "1.1.0"})
    newer = factory.get_provider(v2)
    assert newer is not provider
    await factory.collect()  # the old one is closed between batches
    await factory.aclose()


def test_factory_refuses_a_provider_mismatch(lead_models: dict[str, Path]) -> None:
    cfg = ModelConfig.model_validate(
        sklearn_config("lead-v1", lead_models["champion"]).wire() | {"provider": "custom"}
    )
    provider = _factory().get_provider(cfg)
    assert isinstance(provider, BrokenProvider)
    assert isinstance(provider.failure, ProviderConfigInvalid)
    assert "providerConfig.provider" in provider.failure.message


def test_mock_outputs_are_deterministic_and_marked() -> None:
    a = mock_output(ModelType.CLASSIFICATION, {"visits": 3})
    assert a == mock_output(ModelType.CLASSIFICATION, {"visits": 3})
    assert a["mock"] is True
    assert a["label"] in (0, 1)
    assert 0 <= a["score"] < 1
    assert set(mock_output(ModelType.REGRESSION, {"x": 1})) == {"value", "mock"}


def test_spec_merges_top_level_and_provider_credentials() -> None:
    cfg = ModelConfig.model_validate(
        {
            "id": "m",
            "name": "m",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "openai",
            "endpoint": "http://127.0.0.1:1/top",
            "credentials": {"apiKey": "env:TOP", "org": "env:ORG"},
            "providerConfig": {
                "provider": "openai",
                "credentials": {"apiKey": "env:PC"},
                "model": "gpt",
            },
        }
    )
    spec = ProviderSpec.from_config(cfg, FAST)
    assert dict(spec.credentials) == {"apiKey": "env:PC", "org": "env:ORG"}
    assert spec.endpoint == "http://127.0.0.1:1/top"
    assert spec.settings == {"model": "gpt"}


def test_failures_are_prediction_failures() -> None:
    for cls in (InvalidInput, ProviderTimeout, ProviderUnavailable, ProviderConfigInvalid):
        failure = cls("x")
        assert isinstance(failure, PredictionFailure)
        assert failure.as_dict() == {
            "code": cls.__name__,
            "message": "x",
        }
