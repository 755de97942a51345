"""Running totals of the monitor, per model, variant and A/B test (the metrics endpoint's)."""

from __future__ import annotations

from collections import defaultdict

from consumers.monitor.aggregate import Delta

__all__ = ["Labels", "Totals"]

Labels = tuple[str, str, str]  # model, variant, test_id


class Totals:
    """Per (model, variant, test) sums since the database was created.

    ``traffic`` holds the ``MINUTE_COLUMNS`` sums (requests, errors, fallbacks, cache hits,
    latency sum, answers, answer latency sum and sum of squares), ``latency`` the histogram of
    every result (what callers waited). Keys carry the variant as it came (``shadow`` apart).
    """

    def __init__(self) -> None:
        self.traffic: defaultdict[Labels, list[float]] = defaultdict(
            lambda: [0, 0, 0, 0, 0.0, 0, 0.0, 0.0]
        )
        self.latency: defaultdict[Labels, defaultdict[int, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.errors: defaultdict[tuple[Labels, str], int] = defaultdict(int)
        self.quality: defaultdict[Labels, list[int]] = defaultdict(lambda: [0, 0])

    def merge(self, d: Delta) -> None:
        """Add a delta in."""
        for (test_id, variant, _sv, model, _minute), sums in d.minute.items():
            acc = self.traffic[(model, variant, test_id)]
            for i, v in enumerate(sums):
                acc[i] += v
        for ((test_id, variant, model, _m), bucket), c in d.latency.items():
            self.latency[(model, variant, test_id)][bucket] += c
        for ((test_id, variant, model, _m), code), c in d.errors.items():
            self.errors[((model, variant, test_id), code)] += c
        for (test_id, variant, model, _m), q in d.quality.items():
            acc2 = self.quality[(model, variant, test_id)]
            acc2[0] += int(q[0])
            acc2[1] += int(q[1])
