"""ChampionChallengerRouter: sticky, monotone in the traffic share, faithful to the split."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.routing import BUCKETS, ChampionChallengerRouter, TestPair, bucket_of
from registry.core.state import ActiveABTest, ModelState, iso
from registry.core.types import ModelConfig, ModelType, Provider, Status

NOW = iso(datetime(2026, 1, 1, tzinfo=UTC)) or ""
units = st.text(min_size=1, max_size=40)
percent = st.floats(min_value=0, max_value=100, allow_nan=False)


def _state(model_id: str, test: ActiveABTest | None = None) -> ModelState:
    cfg = ModelConfig(
        id=model_id,
        name=model_id,
        version="1.0.0",
        type=ModelType.CLASSIFICATION,
        provider=Provider.CUSTOM,
        status=Status.ACTIVE,
    )
    return ModelState(cfg.wire(), revision=1, registered_at=NOW, updated_at=NOW, ab_test=test)


def _test(traffic: float, routing: str = "hash", split_version: int = 1) -> ActiveABTest:
    return ActiveABTest("ab:lead-v2:2", "lead-v1", traffic, routing, split_version, NOW)


def _pair(traffic: float, routing: str = "hash") -> TestPair:
    return TestPair(
        challenger=_state("lead-v2", _test(traffic, routing)), champion=_state("lead-v1")
    )


def test_bucket_is_a_stable_function_of_bytes() -> None:
    # Pinned values: a change of hash would silently move every unit between variants.
    assert bucket_of("ab:lead-v2:2", "lead-42") == 6220
    assert bucket_of("t", "u") == 3351


@given(units, units)
def test_bucket_in_range(test_id: str, unit: str) -> None:
    assert 0 <= bucket_of(test_id, unit) < BUCKETS


@given(units, percent)
def test_a_unit_keeps_its_variant(unit: str, traffic: float) -> None:
    router = ChampionChallengerRouter()
    test = _test(traffic)
    first = router.variant(test, unit, "r1")
    assert all(router.variant(test, unit, f"r{i}") == first for i in range(5))


@given(units, percent, percent)
def test_raising_the_share_never_moves_a_unit_back(unit: str, a: float, b: float) -> None:
    low, high = sorted((a, b))
    router = ChampionChallengerRouter()
    if router.variant(_test(low), unit, "r") == "challenger":
        assert router.variant(_test(high, split_version=2), unit, "r") == "challenger"


def test_share_matches_the_traffic_percentage() -> None:
    router = ChampionChallengerRouter()
    shares = []
    for traffic in (5, 20, 50, 87.5):
        test = ActiveABTest(f"ab:m:{traffic}", "c", traffic, "hash", 1, NOW)
        share = (
            sum(router.variant(test, f"lead-{i}", "r") == "challenger" for i in range(10_000)) / 100
        )
        assert abs(share - traffic) < 1.5  # ~3.5 standard deviations at 10,000 units
        shares.append(share)
    assert shares == sorted(shares)


def test_zero_and_hundred_percent_are_absolute() -> None:
    router = ChampionChallengerRouter()
    assert {router.variant(_test(0), f"u{i}", "r") for i in range(2000)} == {"champion"}
    assert {router.variant(_test(100), f"u{i}", "r") for i in range(2000)} == {"challenger"}


@settings(max_examples=50)
@given(units)
def test_random_routing_is_per_request_yet_repeatable(unit: str) -> None:
    router = ChampionChallengerRouter()
    test = _test(50, "random")
    variants = [router.variant(test, unit, f"req-{i}") for i in range(64)]
    assert set(variants) == {"champion", "challenger"}  # not sticky per unit
    assert [
        router.variant(test, unit, f"req-{i}") for i in range(64)
    ] == variants  # same id, same answer


def test_random_routing_share() -> None:
    router = ChampionChallengerRouter()
    test = _test(20, "random")
    share = (
        sum(router.variant(test, "same-unit", f"req-{i}") == "challenger" for i in range(10_000))
        / 10_000
    )
    assert 0.18 <= share <= 0.22


def test_route_without_a_test_serves_the_requested_model() -> None:
    router = ChampionChallengerRouter()
    model = _state("churn-v1")
    route = router.route(model, None, "u1", "r1")
    assert (route.served, route.variant, route.test_id, route.split_version) == (
        model,
        "none",
        None,
        None,
    )


def test_route_tags_and_both_ids_route_through_the_split() -> None:
    router = ChampionChallengerRouter()
    pair = _pair(30)
    seen = {"champion": 0, "challenger": 0}
    for i in range(2000):
        unit = f"lead-{i}"
        via_champion = router.route(pair.champion, pair, unit, f"a{i}")
        via_challenger = router.route(pair.challenger, pair, unit, f"b{i}")
        assert via_champion.variant == via_challenger.variant  # either id: the same split
        expected = pair.challenger if via_champion.variant == "challenger" else pair.champion
        assert via_champion.served is expected
        assert via_challenger.served is expected
        assert via_champion.test_id == "ab:lead-v2:2"
        assert via_champion.split_version == 1
        assert via_champion.champion is pair.champion
        seen[via_champion.variant] += 1
    assert 0.26 <= seen["challenger"] / 2000 <= 0.34


def test_route_follows_a_new_pair_object() -> None:
    router = ChampionChallengerRouter()
    old, new = _pair(0), _pair(100)
    assert router.route(old.champion, old, "u", "r").variant == "champion"
    assert router.route(new.champion, new, "u", "r").variant == "challenger"  # no stale memo
