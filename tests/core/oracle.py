"""A reference fold written the slow, obvious way, to hold the real one to.

It folds pydantic events into pydantic ``ModelConfig`` objects with ``model_copy`` (as the
first build did), and knows nothing of wire forms, facts or the fast check. The property
tests compare ``registry.core.state``'s fold with it, event by event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    aliases: set[str] = field(default_factory=set)
    served_by: str | None = None
    replaces: str | None = None

    def key(self) -> tuple[Any, ...]:
        """Comparable with ``ModelState``: (config wire, revision, times, A/B test, aliases,
        promotion links)."""
        return (
            self.config.wire(),
            self.revision,
            iso(self.registered_at),
            iso(self.updated_at),
            self.ab,
            tuple(sorted(self.aliases)),
            self.served_by,
            self.replaces,
        )


def _ab_config(ab: ActiveABTest) -> ABTestConfig:
    return ABTestConfig(
        enabled=True,
        traffic_percentage=ab.traffic_percentage,
        champion_model_id=ab.champion_model_id,
        routing=ab.routing,  # type: ignore[arg-type]
        mode="shadow" if ab.mode == "shadow" else None,
        guardrails=None if ab.guardrails is None else json.loads(ab.guardrails),
    )


def _holder(models: dict[str, Model], alias: str) -> Model | None:
    for model in models.values():
        if alias in model.aliases:
            return model
    return None


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
                    model.aliases, model.served_by, model.replaces = set(), None, None
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
                    cfg.ab_test.mode or "split",
                    None
                    if cfg.ab_test.guardrails is None
                    else json.dumps(cfg.ab_test.guardrails.wire(), separators=(",", ":")),
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
            elif e.payload.resets_metrics:
                update["metrics"] = None
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
                p.mode or "split",
                None
                if p.guardrails is None
                else json.dumps(p.guardrails.wire(), separators=(",", ":")),
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
            model.aliases, model.served_by, model.replaces = set(), None, None
            cfg = cfg.model_copy(update={"status": Status.UNREGISTERED, "ab_test": None})
        elif isinstance(e, m.AliasAssigned):
            holder = _holder(models, e.payload.alias)
            if holder is not None and holder is not model:
                holder.aliases.discard(e.payload.alias)
                holder.updated_at = at
            model.aliases.add(e.payload.alias)
        elif isinstance(e, m.AliasRemoved):
            model.aliases.discard(e.payload.alias)
        elif isinstance(e, m.ChallengerPromoted):
            champion = models[e.payload.champion_model_id]
            moved = champion.aliases & set(e.payload.aliases)
            champion.aliases -= moved
            champion.config = champion.config.model_copy(update={"status": Status.DEPRECATED})
            champion.served_by, champion.updated_at = model.config.id, at
            model.aliases |= moved
            model.ab, model.served_by, model.replaces = None, None, champion.config.id
            cfg = cfg.model_copy(update={"ab_test": None})
        elif isinstance(e, m.PromotionRolledBack):
            restored = models[e.payload.restored_model_id]
            moved = model.aliases & set(e.payload.aliases)
            restored.aliases |= moved
            restored.config = restored.config.model_copy(update={"status": Status.ACTIVE})
            restored.served_by, restored.updated_at = None, at
            model.aliases -= moved
            model.ab, model.served_by, model.replaces = None, restored.config.id, None
            cfg = cfg.model_copy(update={"status": Status.DEPRECATED, "ab_test": None})
        model.config, model.revision, model.updated_at = cfg, e.revision, at
    return models
