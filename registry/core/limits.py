"""Bounds at the edge: size and JSON nesting depth, checked on the raw bytes before decoding.

Every input topic's consumer calls ``over_limits`` first; a record over a limit is refused
with the reason this returns (never echoing the record), like any other bad input
(docs/security.md).
"""

from __future__ import annotations

import re

__all__ = ["json_depth", "over_limits"]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(data: bytes, stop_at: int | None = None) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data`` (0 for a scalar).

    Brackets inside strings do not count. Counting stops early once ``stop_at`` is passed.
    Malformed text gives a number too (the decoder reports the malformation).
    """
    if data.count(b"{") + data.count(b"[") <= (stop_at if stop_at is not None else 0):
        # Cheap and common: fewer opening brackets than the limit cannot nest deeper.
        return data.count(b"{") + data.count(b"[")
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if match[0] in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest > stop_at:
                    return deepest
        else:
            depth -= 1
    return deepest


def over_limits(data: bytes | None, max_bytes: int, max_depth: int) -> str | None:
    """Why ``data`` is refused (``None``: within the limits). Never quotes ``data``."""
    if data is None:
        return None
    if len(data) > max_bytes:
        return f"message of {len(data)} bytes is over the limit of {max_bytes} bytes"
    if json_depth(data, stop_at=max_depth) > max_depth:
        return f"JSON nested deeper than the limit of {max_depth} levels"
    return None
