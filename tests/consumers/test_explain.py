"""Explanations: exact for linear and tree models, a custom model's own, bounded, opt-in.

Models are trained here on small synthetic data; providers are built by the real factory
from model files, as the predictor builds them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.errors import InvalidInput
from consumers.predictor.results import ResultWriter
from consumers.predictor.work import Work
from consumers.providers import CallPolicy, ProviderFactory
from consumers.providers.explain import Explained
from consumers.providers.sklearn_explain import explain_rows
from registry.core.predictions import (
    EXPLANATION_MAX_CONTRIBUTIONS,
    EXPLANATION_MAX_NAME,
    PredictionRequest,
    PredictionResult,
)
from registry.core.types import ModelConfig
from registry.infra.settings import GrantSettings
from tests.consumers.conftest import custom_config, sklearn_config

NAMES = ["visits", "emails_opened", "company_size", "budget_k"]
FAST = CallPolicy(timeout_s=1.0, retries=0, backoff_s=0.001, concurrency=4)
HERE = "tests.consumers.test_explain"


# --------------------------------------------------------------------------- custom models


def score_why(value: Any) -> dict[str, Any]:
    """A rule score that can say why (its ``explain`` attribute)."""
    if not isinstance(value, dict) or "visits" not in value:
        raise InvalidInput("needs 'visits'")
    return {"score": 10.0 * value["visits"] + 5.0 * value.get("emails_opened", 0)}


def _why(value: dict[str, Any]) -> dict[str, Any]:
    contributions = {
        "visits": 10.0 * value["visits"],
        "emails_opened": 5.0 * value.get("emails_opened", 0),
    }
    contributions.update({f"noise-{i}-" + "n" * 300: 0.001 * i for i in range(30)})
    return {"contributions": contributions, "baseline": 0.0, "target": "score"}


score_why.explain = _why  # type: ignore[attr-defined]


def score_no_why(value: Any) -> dict[str, Any]:
    return {"score": 1.0}


def score_bad_why(value: Any) -> dict[str, Any]:
    return {"score": 1.0}


def _bad_why(value: Any) -> Any:
    if value.get("raise"):
        raise RuntimeError("explainer broke")
    return {"contributions": {"visits": math.nan}}


score_bad_why.explain = _bad_why  # type: ignore[attr-defined]


async def batch_why(values: list[Any]) -> list[dict[str, Any]]:
    return [{"score": float(v["visits"])} for v in values]


async def _batch_explain(values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"contributions": [{"feature": "visits", "contribution": float(v["visits"])}]}
        for v in values
    ]


batch_why.explain = _batch_explain  # type: ignore[attr-defined]

CALLABLES = tuple(
    f"{HERE}:{n}" for n in ("score_why", "score_no_why", "score_bad_why", "batch_why")
)


# --------------------------------------------------------------------------- fixtures


def _data(n: int = 400, seed: int = 3) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.poisson(5, n), rng.poisson(3, n), rng.integers(1, 500, n), rng.uniform(0, 200, n)]
    ).astype(float)
    logit = 0.3 * x[:, 0] + 0.5 * x[:, 1] + 0.002 * x[:, 2] + 0.01 * x[:, 3] - 4
    y = (logit + rng.normal(0, 0.5, n) > 0).astype(int)
    y3 = np.digitize(logit, [-1.0, 1.0])
    value = x @ np.array([2.0, -3.0, 0.05, 1.5]) + 7 + rng.normal(0, 1, n)
    return x, y, y3, value


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Small models trained here, saved as files: name -> (path, the fitted estimator)."""
    import joblib
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x, y, y3, value = _data()
    fitted = {
        "linreg": LinearRegression().fit(x, value),
        "logreg": LogisticRegression(max_iter=1000).fit(x, y),
        "logreg3": LogisticRegression(max_iter=1000).fit(x, y3),
        "scaled": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "tree": DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0).fit(x, y),
        "forest3": RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y3),
        "forest_value": RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0).fit(
            x, value
        ),
        "boosted": GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y),
        "boosted_value": GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, value),
        "knn": KNeighborsClassifier().fit(x, y),
    }
    folder = tmp_path_factory.mktemp("explain-models")
    out = {}
    for name, model in fitted.items():
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        out[name] = (path, model)
    return out


def _factory(models: dict[str, tuple[Path, Any]]) -> ProviderFactory:
    root = next(iter(models.values()))[0].parent
    grants = GrantSettings(callables=CALLABLES, model_roots=(root,), allow_pickle=True)
    return ProviderFactory(FAST, grants=grants)


def _sklearn(models: dict[str, tuple[Path, Any]], name: str, **extra: Any) -> ModelConfig:
    regression = name in {"linreg", "forest_value", "boosted_value"}
    kind = "regression" if regression else "classification"
    return sklearn_config(name.replace("_", "-"), models[name][0], type=kind, **extra)


def _lead(i: int) -> dict[str, float]:
    return {
        "visits": float(i % 11),
        "emails_opened": float((i * 7) % 5),
        "company_size": float((i * 37) % 480 + 1),
        "budget_k": float((i * 13) % 190),
    }


def _adds_up(explanation: dict[str, Any]) -> float:
    """baseline + every contribution (listed and omitted)."""
    listed = math.fsum(c["contribution"] for c in explanation["contributions"])
    return explanation["baseline"] + listed + explanation.get("omitted_contribution", 0.0)


async def _explained(
    models: dict[str, tuple[Path, Any]], name: str, inputs: list[Any], **extra: Any
) -> list[Any]:
    provider = _factory(models).get_provider(_sklearn(models, name, **extra))
    return await provider.explain_batch(inputs, [True] * len(inputs))


# --------------------------------------------------------------------------- linear


async def test_linear_regression_contributions_are_coef_times_x_and_add_up(
    models: dict[str, tuple[Path, Any]],
) -> None:
    model = models["linreg"][1]
    inputs = [_lead(i) for i in range(5)]
    outputs = await _explained(models, "linreg", inputs)
    for value, out in zip(inputs, outputs, strict=True):
        assert isinstance(out, Explained)
        assert out.explanation is not None, out.error
        e = out.explanation
        assert e["method"] == "linear"
        assert e["target"] == "predicted value"
        assert e["baseline"] == pytest.approx(float(model.intercept_), abs=1e-12)
        assert e["target_value"] == out.output["value"]
        assert _adds_up(e) == pytest.approx(out.output["value"], rel=1e-9, abs=1e-9)
        by_feature = {c["feature"]: c for c in e["contributions"]}
        for j, name in enumerate(NAMES):
            assert by_feature[name]["value"] == value[name]
            assert by_feature[name]["contribution"] == pytest.approx(model.coef_[j] * value[name])
        magnitudes = [abs(c["contribution"]) for c in e["contributions"]]
        assert magnitudes == sorted(magnitudes, reverse=True)


async def test_a_reference_point_makes_the_baseline_the_prediction_there(
    models: dict[str, tuple[Path, Any]],
) -> None:
    means = dict(zip(NAMES, _data()[0].mean(axis=0).tolist(), strict=True))
    model = models["linreg"][1]
    (out,) = await _explained(models, "linreg", [_lead(4)], explainBaseline=means)
    e = out.explanation
    at_means = float(model.predict(np.array([[means[n] for n in NAMES]]))[0])
    assert e["baseline"] == pytest.approx(at_means)
    assert _adds_up(e) == pytest.approx(out.output["value"])
    for c in e["contributions"]:
        j = NAMES.index(c["feature"])
        assert c["contribution"] == pytest.approx(
            model.coef_[j] * (_lead(4)[c["feature"]] - means[c["feature"]])
        )


async def test_logistic_regression_is_explained_on_the_logit_of_the_positive_class(
    models: dict[str, tuple[Path, Any]],
) -> None:
    model = models["logreg"][1]
    inputs = [_lead(i) for i in range(6)]
    outputs = await _explained(models, "logreg", inputs)
    for value, out in zip(inputs, outputs, strict=True):
        e = out.explanation
        assert e["target"] == "log-odds of class 1"
        logit = float(model.decision_function(np.array([[value[n] for n in NAMES]]))[0])
        assert e["target_value"] == pytest.approx(logit)
        assert _adds_up(e) == pytest.approx(logit, abs=1e-9)
        assert 1 / (1 + math.exp(-e["target_value"])) == pytest.approx(out.output["score"])


async def test_multiclass_and_scaled_pipelines_add_up(
    models: dict[str, tuple[Path, Any]],
) -> None:
    inputs = [_lead(i) for i in range(8)]
    for name in ("logreg3", "scaled", "forest3"):
        for out in await _explained(models, name, inputs):
            e = out.explanation
            assert e is not None, (name, out.error)
            assert _adds_up(e) == pytest.approx(e["target_value"], abs=1e-9), name
            if name != "scaled":  # more classes: the predicted one is explained
                assert e["target"].endswith(f"class {out.output['label']!r}"), name
    # After a StandardScaler the baseline is the prediction at the training means.
    (out,) = await _explained(models, "scaled", [_lead(1)])
    pipeline = models["scaled"][1]
    at_means = pipeline.decision_function(pipeline[0].mean_[None, :])[0]
    assert out.explanation["baseline"] == pytest.approx(at_means)


# --------------------------------------------------------------------------- trees


async def test_tree_path_contributions_add_up_to_the_prediction_from_the_root(
    models: dict[str, tuple[Path, Any]],
) -> None:
    inputs = [_lead(i) for i in range(10)]
    tree = models["tree"][1]
    for out in await _explained(models, "tree", inputs):
        e = out.explanation
        assert e["method"] == "tree_path"
        assert e["target"] == "probability of class 1"
        root = tree.tree_.value[0, 0]
        assert e["baseline"] == pytest.approx(root[1] / root.sum())
        assert e["target_value"] == pytest.approx(out.output["score"])
        assert _adds_up(e) == pytest.approx(out.output["score"], abs=1e-9)
    forest = models["forest"][1]
    roots = [t.tree_.value[0, 0] for t in forest.estimators_]
    for out in await _explained(models, "forest", inputs):
        e = out.explanation
        assert e["baseline"] == pytest.approx(np.mean([r[1] / r.sum() for r in roots]))
        assert _adds_up(e) == pytest.approx(out.output["score"], abs=1e-9)
    for name in ("forest_value", "boosted_value"):
        for out in await _explained(models, name, inputs):
            assert _adds_up(out.explanation) == pytest.approx(out.output["value"], abs=1e-6), name
    booster = models["boosted"][1]
    for value, out in zip(inputs, await _explained(models, "boosted", inputs), strict=True):
        e = out.explanation
        assert e["target"] == "log-odds of class 1"
        raw = booster.decision_function(np.array([[value[n] for n in NAMES]]))[0]
        assert _adds_up(e) == pytest.approx(raw, abs=1e-9)


def _rows(width: int) -> st.SearchStrategy[list[float]]:
    return st.lists(
        st.floats(min_value=-1000, max_value=1000, allow_nan=False), min_size=width, max_size=width
    )


@settings(max_examples=60, deadline=None)
@given(row=_rows(4))
def test_additivity_holds_for_any_input(
    models: dict[str, tuple[Path, Any]], row: list[float]
) -> None:
    """For any input: baseline + contributions = the model's own explained output."""
    x = np.array([row])
    for name in ("linreg", "logreg", "tree", "forest", "forest_value", "boosted"):
        model = models[name][1]
        (e,) = explain_rows(model, x, NAMES, [row], None)
        assert isinstance(e, dict), (name, e)
        if name == "linreg" or name == "forest_value":
            expected = float(model.predict(x)[0])
        elif name in {"logreg", "boosted"}:
            expected = float(model.decision_function(x)[0])
        else:
            expected = float(model.predict_proba(x)[0, 1])
        assert _adds_up(e) == pytest.approx(expected, rel=1e-9, abs=1e-9), name


# -------------------------------------------------------------- opt-in, bounds, refusals


async def test_only_flagged_inputs_are_explained(models: dict[str, tuple[Path, Any]]) -> None:
    provider = _factory(models).get_provider(_sklearn(models, "logreg"))
    inputs = [_lead(1), _lead(2), {"visits": "many"}]
    plain = await provider.predict_batch(inputs)
    mixed = await provider.explain_batch(inputs, [False, True, True])
    assert mixed[0] == plain[0]
    assert isinstance(mixed[1], Explained)
    assert mixed[1].output == plain[1]
    assert isinstance(mixed[2], InvalidInput)  # a failed prediction stays a failure


async def test_an_unexplainable_model_still_predicts(models: dict[str, tuple[Path, Any]]) -> None:
    (out,) = await _explained(models, "knn", [_lead(3)])
    assert isinstance(out, Explained)
    assert out.explanation is None
    assert out.error == "no exact explanation for KNeighborsClassifier"
    assert set(out.output) == {"label", "score", "probabilities"}


def test_explanations_are_bounded() -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 30))
    model = LinearRegression().fit(x, x @ np.arange(30.0))
    names = [f"feature-{i}-" + "x" * 300 for i in range(30)]
    (e,) = explain_rows(model, x[:1], names, [["v" * 500] * 30], None)
    assert isinstance(e, dict)
    assert len(e["contributions"]) == EXPLANATION_MAX_CONTRIBUTIONS
    assert e["omitted_features"] == 30 - EXPLANATION_MAX_CONTRIBUTIONS
    assert all(len(c["feature"]) == EXPLANATION_MAX_NAME for c in e["contributions"])
    assert all(len(c["value"]) == EXPLANATION_MAX_NAME for c in e["contributions"])
    assert _adds_up(e) == pytest.approx(float(model.predict(x[:1])[0]))


# --------------------------------------------------------------------------- custom


async def test_a_custom_models_own_explanation_passes_through_bounded(
    models: dict[str, tuple[Path, Any]],
) -> None:
    provider = _factory(models).get_provider(custom_config("rules-why", f"{HERE}:score_why"))
    lead = {"visits": 8, "emails_opened": 3}
    (out, plain) = await provider.explain_batch([lead, lead], [True, False])
    assert plain == {"score": 95.0}
    assert isinstance(out, Explained)
    assert out.output == plain
    e = out.explanation
    assert e is not None, out.error
    assert e["method"] == "custom"
    assert e["target"] == "score"
    assert e["contributions"][:2] == [
        {"feature": "visits", "value": 8, "contribution": 80.0},
        {"feature": "emails_opened", "value": 3, "contribution": 15.0},
    ]
    assert len(e["contributions"]) == EXPLANATION_MAX_CONTRIBUTIONS
    assert max(len(c["feature"]) for c in e["contributions"]) == EXPLANATION_MAX_NAME
    assert e["omitted_features"] == 12
    assert _adds_up(e) == pytest.approx(95.0 + sum(0.001 * i for i in range(30)))

    batch = _factory(models).get_provider(
        custom_config("rules-batch-why", f"{HERE}:batch_why", batch=True)
    )
    outs = await batch.explain_batch([{"visits": 2}, {"visits": 5}], [True, True])
    assert [o.explanation["contributions"][0]["contribution"] for o in outs] == [2.0, 5.0]
    assert [o.output for o in outs] == [{"score": 2.0}, {"score": 5.0}]


async def test_a_custom_model_that_cannot_explain_still_predicts(
    models: dict[str, tuple[Path, Any]],
) -> None:
    factory = _factory(models)
    (no_why,) = await factory.get_provider(
        custom_config("rules-no-why", f"{HERE}:score_no_why")
    ).explain_batch([{"visits": 1}], [True])
    assert no_why.output == {"score": 1.0}
    assert "no explain attribute" in no_why.error
    bad = factory.get_provider(custom_config("rules-bad-why", f"{HERE}:score_bad_why"))
    not_finite, raised = await bad.explain_batch([{"visits": 1}, {"raise": True}], [True, True])
    assert not_finite.output == raised.output == {"score": 1.0}
    assert "not a finite number" in not_finite.error
    assert "explainer broke" in raised.error


# --------------------------------------------------------------------------- results


def _work(request: PredictionRequest, output: Any, **extra: Any) -> Work:
    record = ConsumerRecord("t.predictions.requests", 0, 1, 0, 0, b"lead-1", b"", None, 0, 0, [])
    return Work(record, request, output=output, **extra)


def test_results_carry_the_explanation_only_when_asked() -> None:
    writer = ResultWriter("2026-01-01T00:00:00+00:00")
    explained = Explained(
        {"score": 0.9},
        {
            "method": "custom",
            "baseline": 0.1,
            "contributions": [{"feature": "a", "value": 1, "contribution": 0.8}],
        },
    )
    asked = PredictionRequest(id="r-1", model_id="m", input={"a": 1}, explain=True)
    plain = PredictionRequest(id="r-2", model_id="m", input={"a": 1})

    result = PredictionResult.model_validate_json(writer.record(_work(asked, explained)).value)
    assert result.output == {"score": 0.9}
    assert result.explanation is not None
    assert result.explanation.contributions[0].contribution == 0.8
    assert result.explanation_error is None

    raw = orjson.loads(writer.record(_work(plain, explained)).value)
    assert raw["output"] == {"score": 0.9}
    assert "explanation" not in raw
    assert "explanation_error" not in raw

    refused = Explained.refused({"score": 0.9}, "no exact explanation for X")
    result = PredictionResult.model_validate_json(writer.record(_work(asked, refused)).value)
    assert (result.explanation, result.explanation_error) == (None, "no exact explanation for X")

    # Asked, but answered from the cache (which keeps outputs only): said so.
    cached = PredictionResult.model_validate_json(
        writer.record(_work(asked, {"score": 0.9}, cached=True)).value
    )
    assert cached.output == {"score": 0.9}
    assert cached.explanation_error == "answered from the result cache, which keeps no explanations"


def test_explain_is_optional_on_the_wire_and_left_out_when_false() -> None:
    request = PredictionRequest.model_validate_json(b'{"model_id": "m", "input": {}}')
    assert request.explain is False
    assert "explain" not in request.model_dump(mode="json")
    asked = request.model_copy(update={"explain": True})
    assert orjson.loads(asked.model_dump_json())["explain"] is True
