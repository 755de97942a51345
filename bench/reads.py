"""Reads from the projection: ``get_model`` per second and ``list_models`` with a filter.

    python bench/reads.py [--models 100000] [--quick] [--json out.json]

Builds a projection of N models (registered, half of them promoted to active, through the
real projector from events on the broker), then measures through ``ProjectionReader``:
1. ``get_model(id).config`` for random ids, per second (the config read, as a user reads it;
   ``get_model`` alone too); baseline in the same run: the bare
   ``SELECT * FROM models WHERE model_id = ?`` on the same file with sqlite3 (the ceiling);
2. ``list_models(type=..., status=..., limit=100, after=cursor)`` latency (p50/p99): a page
   of 100 over the N models, at random places of the list, as ``ModelView``\ s and with
   ``columns`` selected; baseline: the same page by a bare sqlite3 SELECT; and, as before, the
   whole unpaged list (thousands of rows) for comparison.
Targets: get_model >= 20,000/s; a page of list_models < 10 ms at p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    machine,
    peak_rss_mb,
    percentile,
    results_path,
    use_broker,
    write_figures,
)
from bench.events import produce  # noqa: E402

PAGES = 300
PAGE_COLUMNS = ("model_id", "name", "version", "status", "updated_at")
TYPES = ["classification", "regression", "clustering", "nlp", "recommendation", "forecasting"]
PROVIDERS = [
    "openai",
    "anthropic",
    "aws-sagemaker",
    "azure-ml",
    "custom",
    "scikit-learn",
    "tensorflow",
    "pytorch",
]


def model_events(n: int):  # type: ignore[no-untyped-def]
    """ModelRegistered for n models (types and providers spread), plus activation for half."""
    from datetime import UTC, datetime

    from registry.core import codec
    from registry.core import messages as m
    from registry.core.types import ModelConfig

    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        mid = f"model-{i:08d}"
        cfg = ModelConfig(
            id=mid,
            name=f"Model {i}",
            version="1.0.0",
            type=TYPES[i % 6],
            provider=PROVIDERS[i % 8],
            description="bench",
            status="testing",
        )
        yield (
            mid.encode(),
            codec.encode(m.ModelRegistered(model_id=mid, revision=1, occurred_at=at, payload=cfg)),
        )
        if (i // 8) % 2 == 0:
            payload = m.ModelStatusChangedPayload(**{"from": "testing", "to": "active"})
            yield (
                mid.encode(),
                codec.encode(
                    m.ModelStatusChanged(model_id=mid, revision=2, occurred_at=at, payload=payload)
                ),
            )


async def main_async(n: int, lookups: int, out: Path) -> None:
    from projections.projector import rebuild
    from projections.reader import ProjectionReader
    from registry.infra.kafka.topics import ensure_topics
    from registry.infra.settings import Settings

    broker, bs = bootstrap()
    try:
        settings = Settings(
            bootstrap_servers=bs, topic_prefix=f"reads{int(time.time())}.", fetch_max_wait_ms=500
        )
        await ensure_topics(settings)
        produced = await produce(bs, settings.topic("registry.events"), model_events(n))
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "projection.db"
            await rebuild(settings, db)
            ids = [f"model-{random.randrange(n):08d}" for _ in range(lookups)]
            async with ProjectionReader(db) as reader:
                assert await reader.get_model(ids[0]) is not None
                started = time.perf_counter()
                for mid in ids:
                    await reader.get_model(mid)
                bare_view_rate = lookups / (time.perf_counter() - started)
                started = time.perf_counter()
                for mid in ids:
                    view = await reader.get_model(mid)
                    assert view is not None
                    view.config  # noqa: B018 - the read a user makes
                get_rate = lookups / (time.perf_counter() - started)
                # pages of 100 (type + status=active: n/12 models), starting at random ids
                starts = [f"model-{random.randrange(n):08d}" for _ in range(PAGES)]
                pages, page_cols, page_rows = [], [], 0
                for i, after in enumerate(starts):
                    kw = {"type": TYPES[i % 6], "status": "active", "limit": 100, "after": after}
                    t = time.perf_counter()
                    page = await reader.list_models(**kw)
                    for v in page:
                        v.config  # noqa: B018 - the config read, as for get_model
                    pages.append((time.perf_counter() - t) * 1000)
                    page_rows += len(page)
                    t = time.perf_counter()
                    await reader.list_models(**kw, columns=PAGE_COLUMNS)
                    page_cols.append((time.perf_counter() - t) * 1000)
                latencies = []
                for i in range(30):
                    t = time.perf_counter()
                    found = await reader.list_models(
                        type=TYPES[i % 6], status="active", provider=None
                    )
                    latencies.append((time.perf_counter() - t) * 1000)
                    assert found
                rows_per_list = len(found)
            conn = sqlite3.connect(db)
            started = time.perf_counter()
            for mid in ids:
                conn.execute("SELECT * FROM models WHERE model_id = ?", (mid,)).fetchone()
            bare_rate = lookups / (time.perf_counter() - started)
            bare_pages = []
            for i, after in enumerate(starts):
                t = time.perf_counter()
                conn.execute(
                    "SELECT * FROM models WHERE type = ? AND status = 'active' AND model_id > ? "
                    "ORDER BY model_id LIMIT 100",
                    (TYPES[i % 6], after),
                ).fetchall()
                bare_pages.append((time.perf_counter() - t) * 1000)
            conn.close()
    finally:
        if broker is not None:
            broker.stop()
    figures = {
        "models": n,
        "events": produced,
        "get_model_config_per_s": round(get_rate),
        "get_model_per_s": round(get_rate),
        "get_model_without_config_read_per_s": round(bare_view_rate),
        "bare_select_per_s": round(bare_rate),
        "get_model_ratio_to_bare": round(get_rate / bare_rate, 3),
        "list_models_page_100_p50_ms": round(percentile(pages, 50), 2),
        "list_models_page_100_p99_ms": round(percentile(pages, 99), 2),
        "list_models_page_rows_mean": round(page_rows / len(starts), 1),
        "list_models_page_columns_p50_ms": round(percentile(page_cols, 50), 2),
        "list_models_page_columns_p99_ms": round(percentile(page_cols, 99), 2),
        "list_models_page_columns": list(PAGE_COLUMNS),
        "bare_select_page_p50_ms": round(percentile(bare_pages, 50), 2),
        "bare_select_page_p99_ms": round(percentile(bare_pages, 99), 2),
        "list_models_unpaged_p50_ms": round(percentile(latencies, 50), 2),
        "list_models_unpaged_p99_ms": round(percentile(latencies, 99), 2),
        "list_models_unpaged_rows": rows_per_list,
        "target_get_model_per_s": 20000,
        "target_list_models_ms": 10,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    print(f"reads: projection of {n:,} models")
    print(f"  bare sqlite3 SELECT by id {bare_rate:>10,.0f}/s  (ceiling)")
    print(
        f"  get_model(id).config      {get_rate:>10,.0f}/s  ratio {get_rate / bare_rate:.2f}  "
        f"(target >= 20,000/s; without the config read {bare_view_rate:,.0f}/s)"
    )
    print(
        f"  list_models page of 100 (type, status=active, after=cursor), configs read: "
        f"p50 {figures['list_models_page_100_p50_ms']} ms, "
        f"p99 {figures['list_models_page_100_p99_ms']} ms (target < 10 ms)"
    )
    print(
        f"  the same page, columns {PAGE_COLUMNS}: p50 "
        f"{figures['list_models_page_columns_p50_ms']} ms, "
        f"p99 {figures['list_models_page_columns_p99_ms']} ms; bare SELECT of the page: p50 "
        f"{figures['bare_select_page_p50_ms']} ms, p99 {figures['bare_select_page_p99_ms']} ms"
    )
    print(
        f"  list_models unpaged (type, status=active): p50 "
        f"{figures['list_models_unpaged_p50_ms']} ms, "
        f"p99 {figures['list_models_unpaged_p99_ms']} ms for {rows_per_list:,} rows"
    )
    print(f"  peak RSS {figures['peak_rss_mb']} MB")
    write_figures(out, figures)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2,000 models: a smoke run")
    ap.add_argument("--json", type=Path, help="default: bench/results/reads[.kafka].json")
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    out = args.json or results_path("reads")
    n = 2_000 if args.quick else args.models
    asyncio.run(main_async(n, 2_000 if args.quick else 50_000, out))


if __name__ == "__main__":
    main()
