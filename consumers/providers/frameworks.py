"""pytorch and tensorflow: optional extras, loaded only when a model uses them.

When the framework is not installed, building the provider succeeds and every prediction
fails with ``ProviderNotInstalled`` (a typed error at use, never an import error at start).

Settings: ``modelPath`` (required): a TorchScript file (``torch.jit.save``) or a Keras model
(``.keras`` / SavedModel). Inputs are lists of numbers (or mappings, ordered by the
``features`` setting). Output: ``{"prediction": value}`` with the model's output row.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Sequence
from typing import Any

from consumers.errors import (
    InvalidInput,
    PredictionFailure,
    ProviderConfigInvalid,
    ProviderNotInstalled,
)
from consumers.providers.base import ModelProvider, ProviderSpec, as_failure

__all__ = ["PyTorchProvider", "TensorFlowProvider"]


class _FrameworkProvider(ModelProvider):
    module = ""
    extra = ""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.model_path: str = spec.setting("modelPath")
        features = spec.setting("features", None, list)
        self.features: list[str] | None = [str(f) for f in features] if features else None
        self._model: Any = None
        self._lock = asyncio.Lock()

    def framework(self) -> Any:
        try:
            return importlib.import_module(self.module)
        except ImportError:
            raise ProviderNotInstalled(
                f"{self.spec.label} needs the '{self.module}' package: "
                f"pip install 'model-registry[{self.extra}]'"
            ) from None

    def load(self, framework: Any) -> Any:
        raise NotImplementedError

    def run(self, framework: Any, model: Any, rows: list[list[float]]) -> list[Any]:
        raise NotImplementedError

    async def _loaded(self) -> tuple[Any, Any]:
        framework = self.framework()
        if self._model is None:
            async with self._lock:
                if self._model is None:
                    try:
                        self._model = await asyncio.to_thread(self.load, framework)
                    except FileNotFoundError:
                        raise ProviderConfigInvalid(
                            f"{self.spec.label}: model file {self.model_path} does not exist"
                        ) from None
        return framework, self._model

    async def warm(self) -> None:
        with contextlib.suppress(Exception):  # the first prediction reports the failure
            await self._loaded()

    def _row(self, value: Any) -> list[float]:
        if isinstance(value, dict) and self.features is not None:
            if any(f not in value for f in self.features):
                raise InvalidInput(f"missing feature(s) for '{self.spec.model_id}'")
            value = [value[f] for f in self.features]
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise InvalidInput(
                f"'{self.spec.model_id}' takes a list of numbers "
                "(or a mapping with providerConfig.features)"
            )
        return [float(v) for v in value]

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        try:
            framework, model = await self._loaded()
        except Exception as exc:  # noqa: BLE001 - reported per input
            return [as_failure(exc, self.spec)] * len(inputs)
        out: list[Any] = [None] * len(inputs)
        rows, where = [], []
        for i, value in enumerate(inputs):
            try:
                rows.append(self._row(value))
                where.append(i)
            except PredictionFailure as failure:
                out[i] = failure
        if rows:
            try:
                predictions = self.run(framework, model, rows)
            except Exception as exc:  # noqa: BLE001
                predictions = [
                    InvalidInput(f"{self.spec.label} could not predict: {type(exc).__name__}")
                ] * len(rows)
            for i, p in zip(where, predictions, strict=True):
                out[i] = p if isinstance(p, PredictionFailure) else {"prediction": p}
        return out


class PyTorchProvider(_FrameworkProvider):
    """A TorchScript model, evaluated without gradients on the CPU."""

    module = "torch"
    extra = "torch"

    def load(self, framework: Any) -> Any:
        model = framework.jit.load(self.model_path, map_location="cpu")
        model.eval()
        return model

    def run(self, framework: Any, model: Any, rows: list[list[float]]) -> list[Any]:
        with framework.no_grad():
            result = model(framework.tensor(rows, dtype=framework.float32))
        return list(result.tolist())


class TensorFlowProvider(_FrameworkProvider):
    """A Keras model."""

    module = "tensorflow"
    extra = "tensorflow"

    def load(self, framework: Any) -> Any:
        return framework.keras.models.load_model(self.model_path)

    def run(self, framework: Any, model: Any, rows: list[list[float]]) -> list[Any]:
        import numpy as np

        return list(model.predict(np.asarray(rows, dtype="float32"), verbose=0).tolist())
