"""Callables used as ``custom`` models in tests (``tests.consumers.custom_models:NAME``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from consumers.errors import InvalidInput, ProviderUnavailable

CALLS: dict[str, int] = {}


def score(value: Any) -> dict[str, Any]:
    """A rule-based lead score: visits and opened emails."""
    if not isinstance(value, dict) or "visits" not in value:
        raise InvalidInput("needs 'visits'")
    points = float(value["visits"]) * 10 + float(value.get("emails_opened", 0)) * 5
    return {"label": int(points >= 50), "score": min(points / 100, 1.0)}


def score_v2(value: Any) -> dict[str, Any]:
    """A second rule (the challenger of ``score``)."""
    return {"label": int(float(value.get("visits", 0)) >= 3), "score": 0.5}


async def async_score(value: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return score(value)


def batch_score(values: list[Any]) -> list[dict[str, Any]]:
    return [score(v) for v in values]


def batch_wrong_length(values: list[Any]) -> list[dict[str, Any]]:
    return [{"label": 1}]


def broken(value: Any) -> Any:
    """Always fails like an unreachable service."""
    raise ProviderUnavailable("rules service unreachable")


def crashes(value: Any) -> Any:
    raise ValueError("boom")


async def slow(value: Any) -> Any:
    await asyncio.sleep(5)
    return {"label": 1}


def flaky(value: Any) -> Any:
    """Fails twice per key with a transient error, then answers."""
    key = str(value.get("key")) if isinstance(value, dict) else "x"
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= 2:
        raise ProviderUnavailable("try again")
    return {"label": 1, "attempts": CALLS[key]}


def not_json(value: Any) -> Any:
    return {"label": object()}


NOT_CALLABLE = 42


def linear_2_1() -> Any:
    """The architecture of a PyTorch test model (a granted ``architecture`` callable)."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)


GATE = threading.Event()
"""Holds ``blocking`` calls until set."""
STARTED: list[Any] = []


def blocking(value: Any) -> Any:
    """A stuck sync model: blocks its thread until ``GATE`` is set (or 10 s pass)."""
    STARTED.append(value)
    GATE.wait(10)
    return {"label": 1}


def sleepy(value: Any) -> Any:
    """A slow sync model: holds its thread (not the event loop) for 0.3 s."""
    time.sleep(0.3)
    return {"label": 0}
