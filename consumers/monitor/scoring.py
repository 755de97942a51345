"""Turning a prediction and its ground truth into a quality sample (pure functions).

A result's ``output`` is whatever its provider returned. The predicted value is read from it
by ``predicted_value``: a scalar is the prediction itself; a mapping is searched for the first
of ``PREDICTION_KEYS``; a one-element list is unwrapped. Anything else cannot be scored and
is counted as ``unscorable``.

Classification-like models (classification, nlp, clustering, recommendation) are scored by
exact label match (accuracy, and per-label true/false positives for precision and recall);
regression and forecasting by absolute and squared error. For a model the monitor has not
seen registered, the kind is inferred from the outcome: a bool or string is a label, a
number a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AGREEMENT_ABS_TOL",
    "AGREEMENT_REL_TOL",
    "PREDICTION_KEYS",
    "Agreement",
    "Kind",
    "Score",
    "agreement",
    "kind_of",
    "kind_of_pair",
    "label_of",
    "predicted_value",
    "score",
]

Kind = Literal["classification", "regression"]
PREDICTION_KEYS = ("label", "prediction", "predicted", "class", "value", "result", "output")
_REGRESSION_TYPES = frozenset({"regression", "forecasting"})

Scalar = bool | int | float | str

AGREEMENT_REL_TOL = 1e-6
"""Two regression predictions agree when they differ by at most this share of the larger..."""
AGREEMENT_ABS_TOL = 1e-9
"""... or by at most this much (so that two values near zero can agree)."""


@dataclass(frozen=True, slots=True)
class Score:
    """One scored outcome: ``correct`` for labels, ``error`` (predicted - actual) for values."""

    kind: Kind
    correct: bool
    error: float | None = None
    predicted_label: str | None = None
    actual_label: str | None = None


def kind_of(model_type: str | None, actual: Scalar) -> Kind:
    """How to score a model: from its registered type, else from the outcome's value."""
    if model_type is not None:
        return "regression" if model_type in _REGRESSION_TYPES else "classification"
    if isinstance(actual, bool | str):
        return "classification"
    return "regression" if isinstance(actual, float) else "classification"


def predicted_value(output: Any) -> Scalar | None:
    """The prediction inside a provider's ``output`` (see module docstring), or None."""
    for _ in range(3):  # unwrap at most a few levels: {"prediction": [{"label": ...}]}
        if isinstance(output, bool | int | float | str):
            return output
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
            continue
        if isinstance(output, dict):
            for key in PREDICTION_KEYS:
                if key in output:
                    output = output[key]
                    break
            else:
                return None
            continue
        return None
    return output if isinstance(output, bool | int | float | str) else None


def label_of(value: Scalar) -> str:
    """A canonical label: ``true``/``false`` for booleans and 0/1-like numbers; text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))  # 1.0 and 1 are the same label
        return repr(value)
    return value.strip()


def _as_number(value: Scalar) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def score(kind: Kind, predicted: Scalar | None, actual: Scalar) -> Score | None:
    """Score one prediction against its outcome; None when it cannot be scored."""
    if predicted is None:
        return None
    if kind == "regression":
        p, a = _as_number(predicted), _as_number(actual)
        if p is None or a is None:
            return None
        return Score("regression", correct=p == a, error=p - a)
    p_label, a_label = _canonical_pair(predicted, actual)
    return Score(
        "classification", correct=p_label == a_label, predicted_label=p_label, actual_label=a_label
    )


def _canonical_pair(predicted: Scalar, actual: Scalar) -> tuple[str, str]:
    # A boolean truth scored against a 0/1 (or "true"/"false") prediction means the same
    # thing; map both sides to true/false when either side is a boolean.
    if isinstance(actual, bool) or isinstance(predicted, bool):
        return _boolish(predicted), _boolish(actual)
    return label_of(predicted), label_of(actual)


def _boolish(value: Scalar) -> str:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "1", "yes", "positive"}:
            return "true"
        if text in {"false", "0", "no", "negative"}:
            return "false"
        return value.strip()
    return (
        label_of(bool(value))
        if isinstance(value, bool | int) or value in (0.0, 1.0)
        else label_of(value)
    )


@dataclass(frozen=True, slots=True)
class Agreement:
    """A shadow's prediction against the champion's for the same request: ``agree`` (same
    label; for values, within ``AGREEMENT_REL_TOL`` / ``AGREEMENT_ABS_TOL``) and, for values,
    ``abs_difference``."""

    agree: bool
    abs_difference: float | None = None


def kind_of_pair(model_type: str | None, a: Scalar, b: Scalar) -> Kind:
    """How to compare two predictions: from the registered type, else from the values (two
    non-integer numbers are values; anything else labels)."""
    if model_type is not None:
        return kind_of(model_type, a)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return (
        "regression"
        if numbers and any(isinstance(v, float) for v in (a, b))
        else ("classification")
    )


def agreement(kind: Kind, champion: Scalar | None, shadow: Scalar | None) -> Agreement | None:
    """Whether a shadow's prediction agrees with the champion's; None when either has no
    readable prediction (an error, a mock, an output without one)."""
    if champion is None or shadow is None:
        return None
    if kind == "regression":
        a, b = _as_number(champion), _as_number(shadow)
        if a is None or b is None:
            return None
        close = math.isclose(a, b, rel_tol=AGREEMENT_REL_TOL, abs_tol=AGREEMENT_ABS_TOL)
        return Agreement(close, abs(a - b))
    a_label, b_label = _canonical_pair(shadow, champion)
    return Agreement(a_label == b_label)
