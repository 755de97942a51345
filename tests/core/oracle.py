"""A reference fold written the slow, obvious way, to hold the real one to.

It folds pydantic events into pydantic ``ModelConfig`` objects with ``model_copy`` (as the
first build did), and knows nothing of wire forms, facts or the fast check. The property
tests compare ``registry.core.state``'s fold with it, event by event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.core import messages as m
from registry.core.state import ActiveABTest, ab_test_id, iso
from registry.core.types import ABTestConfig, ModelConfig, Status


@dataclass
class Model:
    config: ModelConfig
    revision: int
    registered_at: datetime
    updated_at: datetime
    ab: ActiveABTest | None = None

    def key(self) -> tuple[Any, ...]:
        """Comparable with ``ModelState``: (config wire, revision, times, A/B test)."""
        return (
            self.config.wire(),
            self.revision,
            iso(self.registered_at),
            iso(self.updated_at),
            self.ab,
        )


def _ab_config(ab: ActiveABTest) -> ABTestConfig:
    return ABTestConfig(
        enabled=True,
        traffic_percentage=ab.traffic_percentage,
        champion_model_id=ab.champion_model_id,
        routing=ab.routing,  # type: ignore[arg-type]
    )


def _changed(config: ModelConfig, changes: m.ConfigChanges) -> ModelConfig:
    update = {name: getattr(changes, name) for name in changes.model_fields_set}
    return config.model_copy(update=update) if update else config


def fold(events: list[m.EventBase]) -> dict[str, Model]:  # noqa: C901 - one case per event
    """The models after ``events`` (assumed in sequence: the decider's own)."""
    models: dict[str, Model] = {}
    for e in events:
        at = e.occurred_at
        if isinstance(e, m.RegistryCleared):
            for model in models.values():
                if model.config.status is not Status.UNREGISTERED:
                    model.config = model.config.model_copy(
                        update={"status": Status.UNREGISTERED, "ab_test": None}
                    )
                    model.ab, model.updated_at = None, at
            continue
        if isinstance(e, m.ModelRegistered):
            cfg = e.payload
            ab = None
            if cfg.ab_test is not None and cfg.ab_test.enabled:
                ab = ActiveABTest(
                    ab_test_id(cfg.id, e.revision),
                    cfg.ab_test.champion_model_id,
                    cfg.ab_test.traffic_percentage,
                    cfg.ab_test.routing,
                    1,
                    iso(at) or "",
                )
            models[e.model_id] = Model(cfg, e.revision, at, at, ab)
            continue
        model = models[e.model_id]
        cfg = model.config
        if isinstance(e, m.ModelVersionReleased):
            cfg = _changed(cfg, e.payload.changes)
            update: dict[str, Any] = {"version": e.payload.version, "status": e.payload.status}
            if e.payload.metrics is not None:
                update["metrics"] = e.payload.metrics
            cfg = cfg.model_copy(update=update)
        elif isinstance(e, m.ModelStatusChanged):
            cfg = cfg.model_copy(update={"status": e.payload.to_status})
        elif isinstance(e, m.ModelMetricsRecorded):
            cfg = cfg.model_copy(update={"metrics": e.payload.metrics})
        elif isinstance(e, m.ModelConfigUpdated):
            cfg = _changed(cfg, e.payload.changes)
        elif isinstance(e, m.ABTestStarted):
            p = e.payload
            model.ab = ActiveABTest(
                p.test_id,
                p.champion_model_id,
                p.traffic_percentage,
                p.routing,
                p.split_version,
                iso(at) or "",
            )
            cfg = cfg.model_copy(update={"ab_test": _ab_config(model.ab)})
        elif isinstance(e, m.ABTestTrafficChanged) and model.ab is not None:
            model.ab = model.ab._replace(
                traffic_percentage=e.payload.traffic_percentage,
                split_version=e.payload.split_version,
            )
            cfg = cfg.model_copy(update={"ab_test": _ab_config(model.ab)})
        elif isinstance(e, m.ABTestStopped):
            model.ab = None
            cfg = cfg.model_copy(update={"ab_test": None})
        elif isinstance(e, m.ModelUnregistered):
            model.ab = None
            cfg = cfg.model_copy(update={"status": Status.UNREGISTERED, "ab_test": None})
        model.config, model.revision, model.updated_at = cfg, e.revision, at
    return models
