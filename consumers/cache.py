"""Bounded in-memory structures of the prediction consumer: the result cache and the dedupe set.

Both are LRU-bounded so memory stays flat under any traffic; neither is a source of truth
(a restart empties them, and the consumer is still correct: redelivered requests are
recomputed deterministically, see ``consumers.predictor``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from hashlib import blake2b
from typing import Any, Final

import orjson

__all__ = ["MISSING", "CacheKey", "RecentIds", "ResultCache", "input_hash"]

MISSING: Final = object()
CacheKey = tuple[str, str, bytes]
"""(served model id, served version, input hash)."""


def input_hash(value: Any) -> bytes:
    """A stable digest of a request input (mapping keys sorted, so order does not matter)."""
    return blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class ResultCache:
    """Outputs by (model, version, input hash), each kept ``ttl_s`` seconds; LRU-bounded.

    A ``ttl_s`` of 0 disables the cache. Only direct provider outputs are stored, never
    errors, fallbacks or mocks.
    """

    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[CacheKey, tuple[float, Any]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: CacheKey) -> Any:
        """The cached output, or ``MISSING`` (absent or expired)."""
        entry = self._items.get(key)
        if entry is None:
            return MISSING
        expires, value = entry
        if expires <= self._clock():
            del self._items[key]
            return MISSING
        self._items.move_to_end(key)
        return value

    def put(self, key: CacheKey, value: Any) -> None:
        if not self.enabled:
            return
        self._items[key] = (self._clock() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class RecentIds:
    """The ids of the last ``max_ids`` requests answered (an LRU set)."""

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def discard(self, request_id: str) -> None:
        self._ids.pop(request_id, None)

    def add(self, request_id: str) -> None:
        ids = self._ids
        if request_id in ids:  # rare: the predictor adds the ids it has not answered yet
            ids.move_to_end(request_id)
            return
        ids[request_id] = None
        if len(ids) > self.max_ids:
            ids.popitem(last=False)
