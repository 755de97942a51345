"""scikit-learn: a fitted estimator from a granted, digest-pinned model file, predicted in batches.

Settings (``providerConfig``): ``modelPath`` (required: the file, under a granted model
root), ``modelSha256`` (required: the SHA-256 of the file; ``consumers.providers.files``),
``features`` (the input keys in column order; defaults to the estimator's
``feature_names_in_``). An input is a mapping of feature name to number, or a list of numbers
already in column order.

Outputs: classification-like models ``{"label", "score", "probabilities"}`` when the estimator
has ``predict_proba`` (``score`` is the probability of the positive class for two classes,
else of the predicted one), else ``{"label"}``; regression/forecasting ``{"value"}``.

Formats, by the file's extension. ``.skops`` (the default to use; ``skops.io``): loaded with
skops' own trusted-types policy and nothing added: only the types skops trusts by default
(scikit-learn's estimators, numpy and scipy arrays, builtins) may be in the file; a file that
holds any other type (a custom class, or ``sklearn.tree._tree.Tree`` of tree models, whose
raw node indices skops will not vouch for) is refused, naming the types. Any other extension
(``.joblib``, ``.pkl``...) is a pickle, which runs code when loaded: refused unless the
operator sets ``REGISTRY_GRANTS_ALLOW_PICKLE``. With that grant, the operator trusts the files
under the model roots with code execution already, so a ``.skops`` file's extra types are
trusted too. In every case the file's bytes are read once and checked against
``modelSha256`` before anything is deserialised, and only those bytes are deserialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from consumers.errors import (
    InvalidInput,
    PredictionFailure,
    ProviderConfigInvalid,
    ProviderNotInstalled,
)
from consumers.providers.base import ModelProvider, ProviderSpec, as_failure, explained_or
from consumers.providers.explain import Explained
from consumers.providers.files import pinned_model
from registry.core.types import ModelType

__all__ = ["SklearnProvider"]

_VALUE_TYPES = frozenset({ModelType.REGRESSION, ModelType.FORECASTING})
# Unpickling imports modules; two threads importing the same modules at once can see a
# partly initialised module, so model files load one at a time.
_LOAD_LOCK = threading.Lock()
_NUMBER_TYPES = frozenset({int, float})
_INSTALL = "scikit-learn models need scikit-learn: pip install 'model-registry[sklearn]'"


def pickle_refused(spec: ProviderSpec) -> ProviderConfigInvalid:
    """The refusal of a pickle/joblib file when the operator has not allowed pickles."""
    return ProviderConfigInvalid(
        f"{spec.label}: {spec.settings.get('modelPath')} is a pickle, which runs code when "
        "loaded; the operator has not allowed pickles (REGISTRY_GRANTS_ALLOW_PICKLE): "
        "save the model with skops (.skops)"
    )


class SklearnProvider(ModelProvider):
    """Vectorised predictions of a local scikit-learn estimator."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.pinned = pinned_model(spec)
        self.model_path: str = self.pinned.name
        self.skops = self.model_path.lower().endswith(".skops")
        if not self.skops and not spec.grants.allow_pickle:
            raise pickle_refused(spec)
        features = spec.setting("features", None, list)
        self._features: list[str] | None = [str(f) for f in features] if features else None
        self._model: Any = None
        self._width: int | None = len(self._features) if self._features else None
        self._load_lock = asyncio.Lock()
        self._reference: list[float] | None = None
        self._reference_error: str | None = None

    async def _loaded(self) -> Any:
        if self._model is None:
            async with self._load_lock:
                if self._model is None:
                    self._model = await asyncio.to_thread(self._load)
        return self._model

    async def warm(self) -> None:
        with contextlib.suppress(Exception):  # the first prediction reports the failure
            await self._loaded()

    def _load(self) -> Any:
        data = self.pinned.read()  # under a root, digest matched: nothing deserialised before
        try:
            with _LOAD_LOCK:
                model = self._deserialise(data)
        except PredictionFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any loading failure is a config problem
            raise ProviderConfigInvalid(
                f"{self.spec.label}: cannot load {self.model_path} ({type(exc).__name__})"
            ) from None
        if not hasattr(model, "predict"):
            raise ProviderConfigInvalid(
                f"{self.spec.label}: {self.model_path} holds no estimator (no predict)"
            )
        if self._features is None and hasattr(model, "feature_names_in_"):
            self._features = [str(f) for f in model.feature_names_in_]
        width = getattr(model, "n_features_in_", None)
        if isinstance(width, int):
            self._width = width
        setting = self.spec.settings.get("explainBaseline")
        if setting is not None:
            from consumers.providers.sklearn_explain import reference_row

            try:
                self._reference = reference_row(setting, self._features, self._width)
            except ValueError as exc:  # the predictions stand; explanations say why not
                self._reference_error = f"providerConfig.explainBaseline: {exc}"
        return model

    def _deserialise(self, data: bytes) -> Any:
        allow_pickle = self.spec.grants.allow_pickle
        if self.skops:
            try:
                import skops.io as sio  # type: ignore[import-untyped,import-not-found,unused-ignore]
            except ImportError:
                raise ProviderNotInstalled(_INSTALL) from None
            untrusted = sio.get_untrusted_types(data=data)
            if untrusted and not allow_pickle:
                raise ProviderConfigInvalid(
                    f"{self.spec.label}: {self.model_path} holds types skops does not trust: "
                    f"{', '.join(untrusted[:5])} (nothing was loaded)"
                )
            return sio.loads(data, trusted=untrusted or None)
        if not allow_pickle:  # checked when built; checked again before any unpickling
            raise pickle_refused(self.spec)
        try:
            import joblib
        except ImportError:  # pragma: no cover - joblib ships with scikit-learn
            raise ProviderNotInstalled(_INSTALL) from None
        return joblib.load(io.BytesIO(data))

    def _row(self, value: Any) -> list[float]:
        if isinstance(value, dict):
            if self._features is None:
                raise InvalidInput(
                    f"{self.spec.label}: inputs must be lists "
                    "(no providerConfig.features and no feature names in the model)"
                )
            missing = [f for f in self._features if f not in value]
            if missing:
                raise InvalidInput(
                    f"missing feature(s) {', '.join(missing[:10])} for '{self.spec.model_id}'"
                )
            row = [value[f] for f in self._features]
        elif isinstance(value, list):
            if self._width is not None and len(value) != self._width:
                raise InvalidInput(
                    f"'{self.spec.model_id}' takes {self._width} features, got {len(value)}"
                )
            row = value
        else:
            raise InvalidInput(
                f"'{self.spec.model_id}' takes a mapping of features or a list of numbers"
            )
        out: list[float] = []
        for v in row:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InvalidInput(f"'{self.spec.model_id}' takes numeric features only")
            out.append(float(v))
        return out

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        try:
            model = await self._loaded()
        except Exception as exc:  # noqa: BLE001
            failure = as_failure(exc, self.spec)
            return [failure] * len(inputs)
        rows = self._fast_rows(inputs)
        if rows is not None:  # every input is well formed: one vectorised call
            return self._predict_or_fail(model, rows)
        results: list[Any] = [None] * len(inputs)
        good: list[list[float]] = []
        where: list[int] = []
        for i, value in enumerate(inputs):
            try:
                good.append(self._row(value))
                where.append(i)
            except PredictionFailure as failure:
                results[i] = failure
        if good:
            for i, out in zip(where, self._predict_or_fail(model, good), strict=True):
                results[i] = out
        return results

    async def explain_batch(self, inputs: Sequence[Any], explain: Sequence[bool]) -> list[Any]:
        """Predictions, and for the flagged inputs an exact explanation (``linear`` or
        ``tree_path``, see ``consumers.providers.sklearn_explain``) or the reason there is
        none. Computed after the predictions, for the flagged inputs only."""
        outputs = await self.predict_batch(inputs)
        chosen = [
            i
            for i, flag in enumerate(explain)
            if flag and not isinstance(outputs[i], PredictionFailure)
        ]
        if not chosen:
            return outputs
        if self._reference_error is not None:
            reason = self._reference_error
            return explained_or(outputs, explain, lambda _i, _out: reason)
        try:
            reasons = self._explain([inputs[i] for i in chosen])
        except Exception as exc:  # noqa: BLE001 - never fails the predictions
            text = f"could not explain: {type(exc).__name__}: {exc}"
            return explained_or(outputs, explain, lambda _i, _out: text)
        for i, found in zip(chosen, reasons, strict=True):
            outputs[i] = (
                Explained.refused(outputs[i], found)
                if isinstance(found, str)
                else Explained(outputs[i], found)
            )
        return outputs

    def _explain(self, inputs: list[Any]) -> list[dict[str, Any] | str]:
        from consumers.providers.sklearn_explain import explain_rows

        rows = [self._row(value) for value in inputs]  # they were predicted: well formed
        width = len(rows[0])
        names = self._features if self._features and len(self._features) == width else None
        names = names or [f"x{j}" for j in range(width)]
        shown = [
            [value.get(n) for n in names] if isinstance(value, dict) else list(value)
            for value in inputs
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
            return explain_rows(self._model, rows, names, shown, self._reference)

    def _fast_rows(self, inputs: Sequence[Any]) -> list[list[Any]] | None:
        """The feature rows when every input is a complete mapping of int/float values
        (the common case), else None (then each input is checked on its own)."""
        features = self._features
        if features is None:
            return None
        try:
            rows = [[value[f] for f in features] for value in inputs]
        except (KeyError, TypeError, IndexError):
            return None
        if not {type(v) for row in rows for v in row} <= _NUMBER_TYPES:
            return None  # bools, strings, None...: the slow path names the problem
        return rows

    def _predict_or_fail(self, model: Any, rows: list[list[Any]]) -> list[Any]:
        try:
            return self._predict(model, rows)
        except Exception as exc:  # noqa: BLE001 - e.g. a wrong number of features
            failure = InvalidInput(
                f"{self.spec.label} could not predict: {type(exc).__name__}: {exc}"[:300]
            )
            return [failure] * len(rows)

    def _predict(self, model: Any, rows: list[list[Any]]) -> list[Any]:
        import numpy as np

        x = np.asarray(rows, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
            if self.spec.model_type in _VALUE_TYPES:
                return [{"value": v} for v in model.predict(x).tolist()]
            if hasattr(model, "predict_proba"):
                return _with_probabilities(model.classes_.tolist(), model.predict_proba(x))
            return [{"label": v} for v in model.predict(x).tolist()]


def _with_probabilities(classes: list[Any], proba: Any) -> list[dict[str, Any]]:
    best = proba.argmax(axis=1).tolist()
    rows = proba.tolist()
    names = [str(c) for c in classes]
    binary = len(classes) == 2
    out = []
    for b, p in zip(best, rows, strict=True):
        out.append(
            {
                "label": classes[b],
                "score": p[1] if binary else p[b],
                "probabilities": dict(zip(names, p, strict=True)),
            }
        )
    return out
