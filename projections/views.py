"""Read-only values returned by ``ProjectionReader``.

``ModelView`` wraps a ``models`` row and parses its config lazily (listing 10,000 models
must not validate 10,000 configs nobody looks at). Every view is immutable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.rows import model_row
from registry.core.state import ModelState
from registry.core.types import Metrics, ModelConfig, ModelType, Provider, Status

__all__ = ["MODEL_COLUMNS", "ABTestView", "ModelView", "SplitView", "StatusChange", "VersionView"]

MODEL_COLUMNS = (
    "model_id, name, version, type, provider, status, description, endpoint, last_trained, config, "
    "metrics, "
    "revision, registered_at, updated_at, ab_test_id, champion_model_id, traffic_percentage, "
    "ab_routing, "
    "split_version, ab_started_at, last_partition, last_offset, aliases, served_by, replaces, "
    "ab_mode, ab_guardrails"
)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class ModelView:
    """A model as the projection holds it (current, or as of a past moment).

    ``config`` is the spec's ``ModelConfig`` (status included); the other attributes are
    the row's columns. Frozen: attributes cannot be set.
    """

    __slots__ = ("_row", "_config")
    _row: tuple[Any, ...]
    _config: ModelConfig | None

    def __init__(self, row: tuple[Any, ...], config: ModelConfig | None = None) -> None:
        object.__setattr__(self, "_row", tuple(row))
        object.__setattr__(self, "_config", config)

    @classmethod
    def from_state(cls, state: ModelState, partition: int, offset: int) -> ModelView:
        """The view of a folded ``ModelState`` (point-in-time answers)."""
        return cls(model_row(state, partition, offset), state.config)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ModelView is immutable; cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelView) and self._row == other._row

    def __hash__(self) -> int:
        return hash(self._row)

    def __repr__(self) -> str:
        return (
            f"ModelView({self.model_id!r}, version={self.version!r}, "
            f"status={self.status.value!r}, revision={self.revision})"
        )

    @property
    def config(self) -> ModelConfig:
        cfg: ModelConfig | None = self._config
        if cfg is None:
            cfg = ModelConfig.model_validate_json(self._row[9])
            object.__setattr__(self, "_config", cfg)
        return cfg

    model_id = property(lambda self: str(self._row[0]), doc="The model id.")
    id = model_id
    name = property(lambda self: str(self._row[1]))
    version = property(lambda self: str(self._row[2]))
    type = property(lambda self: ModelType(self._row[3]))
    provider = property(lambda self: Provider(self._row[4]))
    status = property(lambda self: Status(self._row[5]))
    description = property(lambda self: str(self._row[6]))
    endpoint = property(lambda self: self._row[7])
    last_trained = property(lambda self: _dt(self._row[8]))
    revision = property(lambda self: int(self._row[11]))
    registered_at = property(lambda self: datetime.fromisoformat(self._row[12]))
    updated_at = property(lambda self: datetime.fromisoformat(self._row[13]))
    ab_test_id = property(
        lambda self: self._row[14], doc="The running A/B test this model challenges, if any."
    )
    champion_model_id = property(lambda self: self._row[15])
    traffic_percentage = property(lambda self: self._row[16])
    ab_routing = property(lambda self: self._row[17])
    split_version = property(lambda self: self._row[18])
    ab_started_at = property(lambda self: _dt(self._row[19]))
    last_partition = property(lambda self: int(self._row[20]))
    last_offset = property(lambda self: int(self._row[21]))
    served_by = property(
        lambda self: self._row[23],
        doc="The model serving what is addressed to this one (it was promoted over).",
    )
    replaces = property(lambda self: self._row[24], doc="The champion it was promoted over.")
    ab_mode = property(lambda self: self._row[25])

    @property
    def aliases(self) -> tuple[str, ...]:
        """The aliases that name this model."""
        text = self._row[22]
        return () if text is None else tuple(json.loads(text))

    @property
    def guardrails(self) -> dict[str, Any] | None:
        """The running test's guardrails (wire form), if any."""
        text = self._row[26]
        return None if text is None else dict(json.loads(text))

    @property
    def metrics(self) -> Metrics | None:
        return self.config.metrics

    @property
    def serves(self) -> bool:
        """Only active models serve predictions."""
        return self.status is Status.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the wire config plus the projection's bookkeeping."""
        return {
            "config": self.config.wire(),
            "revision": self.revision,
            "registeredAt": self._row[12],
            "updatedAt": self._row[13],
            "abTest": None
            if self.ab_test_id is None
            else {
                "testId": self.ab_test_id,
                "championModelId": self.champion_model_id,
                "trafficPercentage": self.traffic_percentage,
                "routing": self.ab_routing,
                "splitVersion": self.split_version,
                "startedAt": self._row[19],
                "mode": self.ab_mode or "split",
                "guardrails": self.guardrails,
            },
            "aliases": list(self.aliases),
            "servedBy": self.served_by,
            "replaces": self.replaces,
            "lastPosition": {"partition": self.last_partition, "offset": self.last_offset},
        }


@dataclass(frozen=True, slots=True)
class VersionView:
    """One version a model id has carried."""

    model_id: str
    version: str
    released_status: Status
    config: ModelConfig
    metrics: Metrics | None
    released_at: datetime
    released_by: str
    released_revision: int
    partition: int
    offset: int
    superseded_at: datetime | None

    def __str__(self) -> str:
        end = f", superseded {self.superseded_at.isoformat()}" if self.superseded_at else ""
        return (
            f"{self.model_id} {self.version} released {self.released_at.isoformat()} "
            f"as {self.released_status} by {self.released_by}{end}"
        )


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One lifecycle transition (``from_status`` None: the model's registration)."""

    model_id: str
    revision: int
    from_status: Status | None
    to_status: Status
    changed_at: datetime
    actor: str
    reason: str | None
    event_type: str
    event_id: str
    partition: int
    offset: int

    def __str__(self) -> str:
        start = self.from_status.value if self.from_status else "(new)"
        why = f": {self.reason}" if self.reason else ""
        return (
            f"{self.changed_at.isoformat()} {start} -> {self.to_status.value} by {self.actor} "
            f"(rev {self.revision}){why}"
        )


@dataclass(frozen=True, slots=True)
class SplitView:
    """One split version of an A/B test."""

    split_version: int
    traffic_percentage: float
    previous_percentage: float | None
    changed_at: datetime
    actor: str
    offset: int


@dataclass(frozen=True, slots=True)
class ABTestView:
    """A champion/challenger test, running or stopped, with its split versions."""

    test_id: str
    challenger_model_id: str
    champion_model_id: str
    routing: str
    traffic_percentage: float
    split_version: int
    status: str
    started_at: datetime
    started_by: str
    stopped_at: datetime | None
    stopped_by: str | None
    stop_reason: str | None
    splits: tuple[SplitView, ...]

    @property
    def running(self) -> bool:
        return self.status == "running"
