"""Fixed logarithmic latency buckets: mergeable by addition, percentiles derived.

Bucket 0 holds latencies below ``BASE_MS``; bucket ``i >= 1`` holds
``[BASE_MS * 2**((i-1)/SUB), BASE_MS * 2**(i/SUB))``; the last bucket is open above. With four
buckets per doubling a percentile is off by at most one bucket width (about 19%), and two
histograms (two minutes, two variants, two processes) merge by adding counts, which a
t-digest or a reservoir cannot do exactly.

Every ``SUB``-th upper bound is a power of two times ``BASE_MS``; those are the Prometheus
``le`` buckets, so the exported histogram is derived from the same counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = [
    "BASE_MS",
    "N_BUCKETS",
    "PROMETHEUS_BOUNDS_MS",
    "SUB",
    "bucket_of",
    "bucket_bounds",
    "cumulative_at",
    "percentile",
    "percentiles",
]

BASE_MS = 0.1
SUB = 4
OCTAVES = 21  # 0.1 ms * 2**21 ~ 210 s: anything slower lands in the last bucket
N_BUCKETS = 1 + OCTAVES * SUB
PROMETHEUS_BOUNDS_MS: tuple[float, ...] = tuple(BASE_MS * 2.0**k for k in range(OCTAVES + 1))


def bucket_of(latency_ms: float) -> int:
    """The bucket index of ``latency_ms`` (negative or NaN counts as 0)."""
    if not latency_ms >= BASE_MS:  # also catches NaN
        return 0
    i = int(math.floor(math.log2(latency_ms / BASE_MS) * SUB)) + 1
    return min(i, N_BUCKETS - 1)


def bucket_bounds(i: int) -> tuple[float, float]:
    """``(lower, upper)`` in ms of bucket ``i``; the last bucket is capped one width up."""
    if i <= 0:
        return 0.0, BASE_MS
    return BASE_MS * 2.0 ** ((i - 1) / SUB), BASE_MS * 2.0 ** (i / SUB)


def cumulative_at(counts: Mapping[int, int], bound_index: int) -> int:
    """How many observations are <= ``PROMETHEUS_BOUNDS_MS[bound_index]`` (buckets 0..SUB*k)."""
    last = bound_index * SUB
    return sum(c for b, c in counts.items() if b <= last)


def percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in ms, interpolated inside its bucket; None if empty.

    The rank is ``q * n``: the answer lies in the bucket of the ``ceil(q*n)``-th smallest
    observation. The SQL view ``ab_variant_latency`` uses the same rule.
    """
    n = sum(counts.values())
    if n <= 0:
        return None
    rank = q * n
    seen = 0
    for b in sorted(counts):
        c = counts[b]
        if c <= 0:
            continue
        if seen + c >= rank:
            lo, hi = bucket_bounds(b)
            return lo + (hi - lo) * max(0.0, rank - seen) / c
        seen += c
    lo, hi = bucket_bounds(max(counts))
    return hi


def percentiles(
    counts: Mapping[int, int], qs: Iterable[float] = (0.5, 0.95, 0.99)
) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` for the given quantiles."""
    return {f"p{round(q * 100):d}": percentile(counts, q) for q in qs}
