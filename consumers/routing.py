"""Champion/challenger routing (docs/design.md#predictions, spec section 5).

A request names a model; when that model is the champion or the challenger of a running
A/B test, the split decides which of the two serves it:

- ``hash`` (the default): ``blake2b(test id, unit id)`` into 10,000 buckets; the challenger
  gets buckets ``[0, trafficPercentage * 100)``. A unit keeps its variant for the life of the
  test, and raising the percentage only moves units from champion to challenger, never back.
  The hash is of bytes (not Python's salted ``hash``), so every process agrees.
- ``random`` (the spec's option): the same buckets drawn from ``(test id, request id)``:
  uniformly random across requests, yet a redelivered request lands where it landed before,
  so a retry gets the same answer.

A **shadow** test (``mode: shadow``) answers every request with the champion; the requests in
the challenger's buckets are also mirrored to the challenger (``Route.shadow``), whose answers
go to ``predictions.shadow`` for the monitor and never to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

from registry.core.predictions import Variant
from registry.core.state import ActiveABTest, ModelState

__all__ = ["BUCKETS", "ChampionChallengerRouter", "Route", "TestPair", "bucket_of"]

BUCKETS = 10_000


def bucket_of(test_id: str, key: str) -> int:
    """The bucket (0..9999) of ``key`` in ``test_id``: stable across processes and versions."""
    digest = blake2b(f"{test_id}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) % BUCKETS


@dataclass(frozen=True, slots=True)
class TestPair:
    """A running test: the challenger (which holds the test) and its champion."""

    __test__ = False  # not a pytest test class

    challenger: ModelState
    champion: ModelState

    @property
    def test(self) -> ActiveABTest:
        assert self.challenger.ab_test is not None  # a TestPair is only built for a running test
        return self.challenger.ab_test


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: the model that serves it and the tags its result carries."""

    served: ModelState
    variant: Variant
    test_id: str | None = None
    split_version: int | None = None
    champion: ModelState | None = None  # the fallback of a challenger
    resolved: str | None = None  # the model id the request's name led to
    shadow: ModelState | None = None  # a shadow test's challenger, sent a mirrored copy


class ChampionChallengerRouter:
    """Splits the requests for a champion or its challenger by the test's traffic share."""

    def __init__(self) -> None:
        # (requested id, variant) -> (requested state, pair, route): routes are shared values,
        # rebuilt when the view hands over a new state or pair object.
        self._memo: dict[tuple[str, str], tuple[ModelState, TestPair | None, Route]] = {}

    def challenger_share(self, test: ActiveABTest) -> int:
        """How many of the 10,000 buckets go to the challenger."""
        return round(test.traffic_percentage * 100)  # 0..100 % -> 0..10,000 buckets

    def variant(self, test: ActiveABTest, unit_id: str, request_id: str) -> Variant:
        """``challenger`` or ``champion`` for one request."""
        key = request_id if test.routing == "random" else unit_id
        share = round(test.traffic_percentage * 100)  # 10,000 buckets: 1% is 100 buckets
        return "challenger" if bucket_of(test.test_id, key) < share else "champion"

    def route(
        self, requested: ModelState, pair: TestPair | None, unit_id: str, request_id: str
    ) -> Route:
        """The route of a request for ``requested``; ``pair`` is its running test, if any."""
        variant: Variant = "none" if pair is None else self.variant(pair.test, unit_id, request_id)
        memo_key = (requested.model_id, variant)
        hit = self._memo.get(memo_key)
        if hit is not None and hit[0] is requested and hit[1] is pair:
            return hit[2]
        route = self._build(requested, pair, variant)
        if len(self._memo) > 10_000:
            self._memo.clear()
        self._memo[memo_key] = (requested, pair, route)
        return route

    @staticmethod
    def _build(requested: ModelState, pair: TestPair | None, variant: Variant) -> Route:
        if pair is None:
            return Route(served=requested, variant="none", resolved=requested.model_id)
        test = pair.test
        if test.shadow:  # the champion answers; the challenger's share is mirrored to it
            return Route(
                served=pair.champion,
                variant="champion",
                test_id=test.test_id,
                split_version=test.split_version,
                resolved=requested.model_id,
                shadow=pair.challenger if variant == "challenger" else None,
            )
        return Route(
            served=pair.challenger if variant == "challenger" else pair.champion,
            variant=variant,
            test_id=test.test_id,
            split_version=test.split_version,
            champion=pair.champion,
            resolved=requested.model_id,
        )
