"""``list_models`` pages (limit, offset, cursor) and selected columns agree with the full list."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections import ProjectionReader
from registry.core.types import ModelType, Provider
from tests.projections.test_fold import build, records_of
from tests.projections.workload import History, register


async def test_pages_and_columns_agree_with_the_full_list(tmp_path: Path) -> None:
    h = History()
    for i in range(37):
        h.do(
            register(
                f"m{i:03d}",
                mtype=ModelType.NLP if i % 2 else ModelType.REGRESSION,
                provider=Provider.OPENAI if i % 3 else Provider.PYTORCH,
            )
        )
    db = tmp_path / "p.db"
    await build(db, records_of(h.events))
    async with ProjectionReader(db) as reader:
        for filters in ({}, {"type": "nlp"}, {"type": "nlp", "provider": "openai"}):
            full = await reader.list_models(**filters)
            assert await reader.count_models(**filters) == len(full)
            paged, after = [], None
            while True:
                page = await reader.list_models(**filters, limit=5, after=after)
                paged += page
                if len(page) < 5:
                    break
                after = page[-1].model_id
            assert paged == full
            assert await reader.list_models(**filters, limit=4, offset=3) == full[3:7]
            rows = await reader.list_models(**filters, limit=10, columns=["model_id", "status"])
            assert rows == [{"model_id": v.model_id, "status": v.status.value} for v in full[:10]]
        with pytest.raises(ValueError, match="no such models columns"):
            await reader.list_models(columns=["model_id; DROP TABLE models"])
