"""pytorch and tensorflow: optional extras, loaded only when a model uses them.

When the framework is not installed, building the provider succeeds (once its settings are
valid) and every prediction fails with ``ProviderNotInstalled`` (a typed error at use, never
an import error at start).

Settings: ``modelPath`` (required, under a granted model root) and ``modelSha256`` (required:
the SHA-256 of the file, or the directory digest of a SavedModel: ``consumers.providers.files``),
checked before anything is deserialised. Inputs are lists of numbers (or mappings, ordered by
the ``features`` setting). Output: ``{"prediction": value}`` with the model's output row.

PyTorch, two forms:

- a state dict (``torch.save(model.state_dict(), path)``) with ``architecture``: a granted
  callable (an entry point of ``model_registry.callables`` or a ``module:function`` listed
  in ``REGISTRY_GRANTS_CALLABLES``) that returns the untrained ``torch.nn.Module``; the
  weights load with ``torch.load(weights_only=True)``, which builds tensors and plain
  containers only, never arbitrary objects;
- a TorchScript archive (``torch.jit.save``) without ``architecture``: it carries code that
  runs when called, so it loads only when the operator sets ``REGISTRY_GRANTS_ALLOW_PICKLE``.

TensorFlow: a Keras file (``.keras``, loaded with ``safe_mode=True``: no lambda layers'
code is deserialised) or a SavedModel directory (its ``serving_default`` signature). Either
is loaded from a private copy made of the very bytes that were hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consumers.errors import (
    InvalidInput,
    PredictionFailure,
    ProviderConfigInvalid,
    ProviderNotInstalled,
)
from consumers.providers.base import ModelProvider, ProviderSpec, as_failure
from consumers.providers.callables import granted_callable
from consumers.providers.files import pinned_model

__all__ = ["PyTorchProvider", "TensorFlowProvider"]


class _FrameworkProvider(ModelProvider):
    module = ""
    extra = ""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.pinned = pinned_model(spec)
        self.model_path: str = self.pinned.name
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

    def _load(self, framework: Any) -> Any:
        try:
            return self.load(framework)
        except PredictionFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any loading failure is a config problem
            raise ProviderConfigInvalid(
                f"{self.spec.label}: cannot load {self.model_path} ({type(exc).__name__})"
            ) from None

    async def _loaded(self) -> tuple[Any, Any]:
        framework = self.framework()
        if self._model is None:
            async with self._lock:
                if self._model is None:
                    self._model = await asyncio.to_thread(self._load, framework)
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
    """A state dict with a granted architecture (weights only), or a TorchScript archive
    when pickles are allowed; evaluated without gradients on the CPU."""

    module = "torch"
    extra = "torch"

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.architecture: str | None = spec.setting("architecture", None)
        self.build: Any = None
        if self.architecture is not None:
            self.build = granted_callable(
                spec.label, "architecture", self.architecture, spec.grants
            )
        elif not spec.grants.allow_pickle:
            raise ProviderConfigInvalid(
                f"{spec.label}: a TorchScript archive runs the code it carries; the operator "
                "has not allowed that (REGISTRY_GRANTS_ALLOW_PICKLE): give "
                "providerConfig.architecture (a granted callable) and a state dict instead"
            )

    def load(self, framework: Any) -> Any:
        data = io.BytesIO(self.pinned.read())  # digest matched before anything is read
        if self.build is not None:
            state = framework.load(data, map_location="cpu", weights_only=True)
            model = self.build()
            model.load_state_dict(state)
        else:
            if not self.spec.grants.allow_pickle:  # checked when built; checked again
                raise ProviderConfigInvalid(f"{self.spec.label}: TorchScript is not allowed")
            model = framework.jit.load(data, map_location="cpu")
        model.eval()
        return model

    def run(self, framework: Any, model: Any, rows: list[list[float]]) -> list[Any]:
        with framework.no_grad():
            result = model(framework.tensor(rows, dtype=framework.float32))
        return list(result.tolist())


class TensorFlowProvider(_FrameworkProvider):
    """A Keras file (safe mode) or a SavedModel directory."""

    module = "tensorflow"
    extra = "tensorflow"

    def load(self, framework: Any) -> Any:
        if self.pinned.is_dir():
            copy = self.pinned.copy_tree()
            try:
                loaded = framework.saved_model.load(str(copy))
                return loaded.signatures["serving_default"]
            finally:
                shutil.rmtree(copy, ignore_errors=True)
        data = self.pinned.read()
        folder = Path(tempfile.mkdtemp(prefix="model-"))
        try:
            path = folder / Path(self.model_path).name
            path.write_bytes(data)
            return framework.keras.models.load_model(str(path), safe_mode=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def run(self, framework: Any, model: Any, rows: list[list[float]]) -> list[Any]:
        import numpy as np

        batch = np.asarray(rows, dtype="float32")
        if hasattr(model, "predict"):
            return list(model.predict(batch, verbose=0).tolist())
        # A SavedModel signature takes its one input by name and answers named outputs.
        _, named = model.structured_input_signature
        outputs = model(**{next(iter(named)): framework.constant(batch)})
        first = outputs[next(iter(outputs))] if isinstance(outputs, dict) else outputs
        return list(first.numpy().tolist())
