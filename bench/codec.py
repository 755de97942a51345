"""Codec speed: decode/encode of small registry events, against bare ``orjson.loads``.

    python bench/codec.py [--quick] [--json out.json]

Prints events/s for ``decode_event`` and ``encode`` and the ratio to the bare JSON parse of
the same bytes (the ceiling for any validating decoder).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from bench.common import machine, peak_rss_mb, write_figures  # noqa: E402
from registry.core import codec  # noqa: E402
from registry.core import messages as m  # noqa: E402
from registry.core.types import Metrics  # noqa: E402


def sample_events(n: int) -> list[bytes]:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    out = []
    for i in range(n):
        if i % 3 == 0:
            ev: m.EventBase = m.ModelMetricsRecorded(
                model_id=f"model-{i % 1000}",
                revision=i + 1,
                occurred_at=now,
                actor="bench",
                payload=m.RecordMetricsPayload(
                    metrics=Metrics(accuracy=80 + i % 20, f1_score=70.5)
                ),
            )
        elif i % 3 == 1:
            ev = m.ModelStatusChanged(
                model_id=f"model-{i % 1000}",
                revision=i + 1,
                occurred_at=now,
                actor="bench",
                payload=m.ModelStatusChangedPayload(**{"from": "testing", "to": "active"}),
            )
        else:
            ev = m.ABTestTrafficChanged(
                model_id=f"model-{i % 1000}",
                revision=i + 1,
                occurred_at=now,
                actor="bench",
                payload=m.ABTestTrafficChangedPayload(
                    test_id="ab:x:1", previous_percentage=10, traffic_percentage=20, split_version=2
                ),
            )
        out.append(codec.encode(ev))
    return out


def rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "codec.json")
    args = ap.parse_args()
    n = 5_000 if args.quick else 200_000
    data = sample_events(n)
    size = sum(map(len, data)) / n
    bare = rate(orjson.loads, data)
    decode = rate(codec.decode_event, data)
    events = [codec.decode_event(d) for d in data[: n // 4]]
    encode = rate(codec.encode, events)
    figures = {
        "events": n,
        "avg_bytes": round(size),
        "orjson_loads_per_s": round(bare),
        "decode_event_per_s": round(decode),
        "encode_per_s": round(encode),
        "decode_vs_bare_ratio": round(decode / bare, 3),
        "target_decode_per_s": 200_000,
        "broker": None,  # no broker involved
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    print(f"codec: {n} events of ~{size:.0f} bytes")
    print(f"  bare orjson.loads  {bare:>12,.0f}/s  (baseline)")
    print(
        f"  decode_event       {decode:>12,.0f}/s  ratio {decode / bare:.2f}  (target >= 200,000/s)"
    )
    print(f"  encode             {encode:>12,.0f}/s")
    print(f"  peak RSS {figures['peak_rss_mb']} MB")
    write_figures(args.json, figures)


if __name__ == "__main__":
    main()
