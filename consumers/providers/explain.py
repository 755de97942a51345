"""Explanations of predictions: what providers return for a request that asks ``explain``.

A provider's ``explain_batch(inputs, explain)`` answers like ``predict_batch`` and, in the
slots whose flag is set and whose prediction succeeded, an ``Explained``: the output plus
either an explanation (the wire dict of ``registry.core.predictions.Explanation``) or the
reason there is none. An explanation that cannot be made never fails its prediction.

``explanation(...)`` builds the bounded wire dict from any list of contributions: largest
magnitude first, at most ``EXPLANATION_MAX_CONTRIBUTIONS`` (the rest summed into
``omitted_contribution``), names and string values cut to ``EXPLANATION_MAX_NAME``
characters, non-finite numbers refused. ``custom_explanation`` checks what a model's own
code returns the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.core.predictions import EXPLANATION_MAX_CONTRIBUTIONS, EXPLANATION_MAX_NAME

__all__ = [
    "Explained",
    "ExplanationRefused",
    "custom_explanation",
    "explanation",
    "input_value",
]

_MAX_REASON = 500
_MAX_CUSTOM_CONTRIBUTIONS = 100_000  # read from a model's own code before the top 20 are kept


@dataclass(frozen=True, slots=True)
class Explained:
    """A provider output with its explanation (a wire dict), or why it has none (``error``)."""

    output: Any
    explanation: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def refused(cls, output: Any, reason: str) -> Explained:
        return cls(output, None, reason[:_MAX_REASON])


class ExplanationRefused(Exception):  # noqa: N818 - a reason, not a failure of the prediction
    """No explanation for this prediction; the message says why (the prediction stands)."""


def _name(value: Any) -> str:
    return str(value)[:EXPLANATION_MAX_NAME]


def input_value(value: Any) -> float | int | bool | str | None:
    """An input's value as an explanation shows it: a scalar (strings cut), else None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)  # orjson writes 64 bits at most
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:EXPLANATION_MAX_NAME]
    return None


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:  # numpy scalars
            value = float(value)
        except (TypeError, ValueError):
            raise ExplanationRefused(f"{what} is not a number") from None
    number = float(value)
    if not math.isfinite(number):
        raise ExplanationRefused(f"{what} is not a finite number")
    return number


def explanation(
    method: str,
    contributions: Iterable[tuple[Any, Any, Any]],
    *,
    baseline: Any = None,
    target: str | None = None,
    target_value: Any = None,
) -> dict[str, Any]:
    """The wire dict of an explanation from ``(feature, input value, contribution)`` triples.

    Raises:
        ExplanationRefused: a contribution, the baseline or the target value is not a
            finite number.
    """
    items = [
        (_name(feature), input_value(value), _finite(c, f"the contribution of {_name(feature)!r}"))
        for feature, value, c in contributions
    ]
    items.sort(key=lambda item: -abs(item[2]))
    kept, rest = items[:EXPLANATION_MAX_CONTRIBUTIONS], items[EXPLANATION_MAX_CONTRIBUTIONS:]
    out: dict[str, Any] = {
        "method": method,
        "contributions": [{"feature": f, "value": v, "contribution": c} for f, v, c in kept],
    }
    if target is not None:
        out["target"] = _name(target)
    if target_value is not None:
        out["target_value"] = _finite(target_value, "the explained value")
    if baseline is not None:
        out["baseline"] = _finite(baseline, "the baseline")
    if rest:
        out["omitted_features"] = len(rest)
        out["omitted_contribution"] = math.fsum(c for _, _, c in rest)
    return out


def custom_explanation(raw: Any, value: Any) -> dict[str, Any]:
    """A model's own explanation, checked and bounded (method ``custom``).

    ``raw`` is a mapping with ``contributions``: either a mapping of feature name to
    contribution, or a list of ``{"feature", "contribution", "value"?}``; and optionally
    ``baseline`` and ``target_value`` (numbers) and ``target`` (text). A contribution's
    ``value`` defaults to the input's value of that feature when the input is a mapping.
    Anything else in ``raw`` is ignored.

    Raises:
        ExplanationRefused: ``raw`` is not of that shape.
    """
    if not isinstance(raw, Mapping):
        raise ExplanationRefused(
            f"the model's explanation must be a mapping with 'contributions', "
            f"not {type(raw).__name__}"
        )
    given = raw.get("contributions")
    inputs = value if isinstance(value, Mapping) else {}
    triples: list[tuple[Any, Any, Any]] = []
    if isinstance(given, Mapping):
        entries: Iterable[Any] = ({"feature": k, "contribution": c} for k, c in given.items())
        size = len(given)
    elif isinstance(given, list):
        entries, size = given, len(given)
    else:
        raise ExplanationRefused(
            "the model's explanation has no 'contributions' (a mapping or a list)"
        )
    if size > _MAX_CUSTOM_CONTRIBUTIONS:
        raise ExplanationRefused(
            f"the model's explanation has {size} contributions, over {_MAX_CUSTOM_CONTRIBUTIONS}"
        )
    for entry in entries:
        if not isinstance(entry, Mapping) or "feature" not in entry or "contribution" not in entry:
            raise ExplanationRefused(
                "each contribution of the model's explanation needs 'feature' and 'contribution'"
            )
        feature = entry["feature"]
        if not isinstance(feature, str | int):
            raise ExplanationRefused("a feature of the model's explanation is not a name")
        shown = entry["value"] if "value" in entry else inputs.get(feature)
        triples.append((feature, shown, entry["contribution"]))
    target = raw.get("target")
    return explanation(
        "custom",
        triples,
        baseline=raw.get("baseline"),
        target=target if isinstance(target, str) else None,
        target_value=raw.get("target_value"),
    )
