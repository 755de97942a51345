"""Following ``registry.events``: which A/B tests exist, their splits, and model types.

Results carry ``test_id`` and ``split_version`` but not the percentage, so the monitor folds
the registry log with the one fold (``RegistryState.apply``, through ``fold_records``) and
records each test's champion, challenger, mode (``split`` or ``shadow``), split history and
start/stop times. The fold is
rebuilt from offset 0 on every start (the state lives in memory); the rows it writes are
idempotent upserts.
"""

from __future__ import annotations

from consumers.monitor.store import ABTestRow, Batch, ModelRow, SplitRow
from registry.core.replay import Applied, RecordLike
from registry.core.state import ActiveABTest, Change, Fact, ModelState, RegistryState

__all__ = ["ABTestTracker"]


def _test_row(ab: ActiveABTest, challenger: str, stopped_at: str | None = None) -> ABTestRow:
    return ABTestRow(
        test_id=ab.test_id,
        champion_model_id=ab.champion_model_id,
        challenger_model_id=challenger,
        traffic_percentage=ab.traffic_percentage,
        split_version=ab.split_version,
        routing=ab.routing,
        started_at=ab.started_at,
        stopped_at=stopped_at,
        mode=ab.mode,
    )


class ABTestTracker:
    """Holds the folded registry; ``record(batch)`` turns what each event changed into rows."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.kinds: dict[str, str] = {}
        """Model id -> registered type (decides how its outcomes are scored)."""

    def record(self, batch: Batch) -> Applied:
        """The ``on_applied`` callback of ``fold_records`` that adds rows to ``batch``."""

        def applied(record: RecordLike, fact: Fact, changes: list[Change]) -> None:
            for before, after in changes:
                self._changed(fact, before, after, batch)

        return applied

    def _changed(
        self, fact: Fact, before: ModelState | None, after: ModelState, batch: Batch
    ) -> None:
        model_id, wire = after.model_id, after.wire
        self.kinds[model_id] = wire["type"]
        batch.models[model_id] = ModelRow(model_id, wire["type"], wire["version"], wire["status"])
        old, new = (before.ab_test if before is not None else None), after.ab_test
        if old is not None and (new is None or new.test_id != old.test_id):
            batch.tests[old.test_id] = _test_row(old, model_id, stopped_at=fact.at)
        if new is not None and new != old:
            batch.tests[new.test_id] = _test_row(new, model_id)
            since = new.started_at if new.split_version == 1 else fact.at
            batch.splits[(new.test_id, new.split_version)] = SplitRow(
                new.test_id, new.split_version, new.traffic_percentage, since
            )
