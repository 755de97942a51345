"""ResultCache (TTL, LRU bound) and RecentIds (the dedupe set)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumers.cache import MISSING, RecentIds, ResultCache, input_hash


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = ResultCache(ttl_s=10, max_entries=100, clock=clock)
    key = ("lead-v1", "1.0.0", b"h")
    cache.put(key, {"label": 1})
    clock.now += 9.9
    assert cache.get(key) == {"label": 1}
    clock.now += 0.2
    assert cache.get(key) is MISSING
    assert len(cache) == 0  # an expired entry is dropped when found


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResultCache(ttl_s=60, max_entries=2, clock=Clock())
    a, b, c = (("m", "1.0.0", bytes([i])) for i in range(3))
    cache.put(a, 1)
    cache.put(b, 2)
    assert cache.get(a) == 1  # a is now the most recent
    cache.put(c, 3)
    assert cache.get(b) is MISSING
    assert (cache.get(a), cache.get(c)) == (1, 3)


def test_a_zero_ttl_disables_the_cache() -> None:
    cache = ResultCache(ttl_s=0, max_entries=10)
    cache.put(("m", "1", b"x"), 1)
    assert not cache.enabled
    assert cache.get(("m", "1", b"x")) is MISSING


def test_versions_do_not_share_entries() -> None:
    cache = ResultCache(ttl_s=60, max_entries=10)
    h = input_hash({"a": 1})
    cache.put(("m", "1.0.0", h), "old")
    assert cache.get(("m", "1.0.1", h)) is MISSING


json_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_input_hash_ignores_key_order(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert input_hash(value) == input_hash(reordered)


def test_input_hash_tells_inputs_apart() -> None:
    assert input_hash({"a": 1}) != input_hash({"a": 2})
    assert input_hash({"a": 1}) != input_hash([{"a": 1}])


def test_recent_ids_are_bounded_and_forgettable() -> None:
    recent = RecentIds(max_ids=3)
    for i in range(5):
        recent.add(f"r{i}")
    assert len(recent) == 3
    assert "r0" not in recent
    assert "r1" not in recent
    assert all(f"r{i}" in recent for i in (2, 3, 4))
    recent.add("r2")  # refreshed: now the newest
    recent.add("r5")
    assert "r2" in recent
    assert "r3" not in recent
    recent.discard("r2")
    assert "r2" not in recent
    recent.discard("never-seen")  # no error
