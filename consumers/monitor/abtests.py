"""Following ``registry.events``: which A/B tests exist, their splits, and model types.

Results carry ``test_id`` and ``split_version`` but not the percentage, so the monitor folds
the registry log with the domain's own ``RegistryState.apply`` and records each test's
champion, challenger, split history and start/stop times. The fold is rebuilt from offset 0
on every start (the state lives in memory); the rows it writes are idempotent upserts.
"""

from __future__ import annotations

import logging

from consumers.monitor.store import ABTestRow, Batch, ModelRow, SplitRow
from registry.domain.messages import EventBase, RegistryCleared
from registry.domain.rules import ActiveABTest, RegistryState

__all__ = ["ABTestTracker"]

log = logging.getLogger(__name__)


def _test_row(ab: ActiveABTest, challenger: str, stopped_at: str | None = None) -> ABTestRow:
    return ABTestRow(
        test_id=ab.test_id,
        champion_model_id=ab.champion_model_id,
        challenger_model_id=challenger,
        traffic_percentage=ab.traffic_percentage,
        split_version=ab.split_version,
        routing=ab.routing,
        started_at=ab.started_at.isoformat(),
        stopped_at=stopped_at,
    )


class ABTestTracker:
    """Folds registry events; ``apply`` adds the rows an event changes to a ``Batch``."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.kinds: dict[str, str] = {}
        """Model id -> registered type (decides how its outcomes are scored)."""

    def apply(self, event: EventBase, batch: Batch) -> None:
        """Fold ``event`` in. Raises ``RevisionGap`` (state unchanged) if it is out of sequence."""
        affected = (
            list(self.state.models) if isinstance(event, RegistryCleared) else [event.model_id]
        )
        before = {m: (s.ab_test if (s := self.state.models.get(m)) else None) for m in affected}
        self.state.apply(event)
        at = event.occurred_at.isoformat()
        for model_id in affected:
            state = self.state.models.get(model_id)
            if state is None:
                continue
            cfg = state.config
            self.kinds[model_id] = str(cfg.type)
            batch.models[model_id] = ModelRow(model_id, str(cfg.type), cfg.version, str(cfg.status))
            old, new = before[model_id], state.ab_test
            if old is not None and (new is None or new.test_id != old.test_id):
                batch.tests[old.test_id] = _test_row(old, model_id, stopped_at=at)
            if new is not None and new != old:
                batch.tests[new.test_id] = _test_row(new, model_id)
                since = new.started_at.isoformat() if new.split_version == 1 else at
                batch.splits[(new.test_id, new.split_version)] = SplitRow(
                    new.test_id, new.split_version, new.traffic_percentage, since
                )
