"""The spec's development fallback: a deterministic mock prediction, used only when configured.

The score is derived from the input's hash, so the same input always gets the same mock.
Every mock output says ``"mock": true`` and the result says ``fallback: "mock"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.cache import input_hash
from consumers.providers.base import ModelProvider
from registry.core.types import ModelType

__all__ = ["MockProvider", "mock_output"]

_VALUE_TYPES = frozenset({ModelType.REGRESSION, ModelType.FORECASTING})


def mock_output(model_type: ModelType, value: Any) -> dict[str, Any]:
    """A mock prediction for ``value`` shaped like the model type's real outputs."""
    score = int.from_bytes(input_hash(value)[:4], "big") / 2**32
    if model_type in _VALUE_TYPES:
        return {"value": score, "mock": True}
    return {"label": int(score >= 0.5), "score": score, "mock": True}


class MockProvider(ModelProvider):
    """Mock predictions for one model."""

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        return [mock_output(self.spec.model_type, v) for v in inputs]
