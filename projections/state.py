"""The projector's in-memory fold: plain values, convertible to and from the domain's.

``Folded`` is one model's state as the projection stores it: the config in its wire form (a
JSON-ready dict, camelCase keys in ``ModelConfig`` field order, no null fields, i.e. what
``ModelConfig.model_dump(mode="json", by_alias=True, exclude_none=True)`` returns), the
revision, and times as fixed-width UTC text. It is what ``registry.domain.rules.ModelState``
holds, without the pydantic objects: the fast path of ``projections.fastpath`` evolves it
directly; the careful path converts to a ``ModelState`` (``domain()``), applies the domain's
own ``evolve`` and converts back (``Folded.from_domain``).

A ``Folded`` is never changed once built (a batch's rows may still refer to it while the
next batch is folded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from registry.domain.rules import ActiveABTest, ModelState, RegistryState
from registry.domain.types import ModelConfig

__all__ = [
    "CONFIG_FIELDS",
    "ABTuple",
    "FoldState",
    "Folded",
    "dumps",
    "iso",
    "iso_text",
]

CONFIG_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "version",
    "type",
    "provider",
    "description",
    "endpoint",
    "credentials",
    "providerConfig",
    "parameters",
    "metrics",
    "lastTrained",
    "status",
    "abTest",
)
"""``ModelConfig``'s wire names, in field order (the order of its JSON)."""

ABTuple = tuple[str, str, float, str, int, str]
"""A running A/B test: (test id, champion id, traffic %, routing, split version, started at)."""


def iso(value: datetime | None) -> str | None:
    """Fixed-width UTC ISO-8601 text (microseconds, ``+00:00``): text order is time order."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # envelopes are normalised to UTC already: skip the conversion
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


_ISO_TEXT: dict[str, str] = {}


def iso_text(wire: str) -> str:
    """``iso`` of a datetime given in its wire form (e.g. a config's ``lastTrained``)."""
    text = _ISO_TEXT.get(wire)
    if text is None:
        if len(_ISO_TEXT) > 10_000:
            _ISO_TEXT.clear()
        text = _ISO_TEXT[wire] = iso(datetime.fromisoformat(wire)) or ""
    return text


def dumps(value: Any) -> str:
    """Compact JSON text, as pydantic's ``model_dump_json`` writes it for wire values.

    orjson cannot write integers beyond 64 bits or lone surrogates (a config may hold
    either in ``parameters``); those rare values take the standard library, which is just
    as deterministic."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def loads(text: str) -> Any:
    """The inverse of ``dumps``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class Folded(NamedTuple):
    """One model's state (see the module doc). A tuple: cheap to make, never changed."""

    config: dict[str, Any]
    revision: int
    registered_at: str
    updated_at: str
    ab: ABTuple | None = None

    @property
    def model_id(self) -> str:
        return str(self.config["id"])

    @property
    def status(self) -> str:
        return str(self.config["status"])

    @property
    def version(self) -> str:
        return str(self.config["version"])

    @property
    def metrics(self) -> dict[str, float] | None:
        return self.config.get("metrics")

    @property
    def live(self) -> bool:
        return bool(self.config["status"] != "unregistered")

    def config_text(self) -> str:
        """The config's JSON (what ``models.config`` and ``model_versions.config`` hold)."""
        return dumps(self.config)

    def metrics_text(self) -> str | None:
        metrics = self.config.get("metrics")
        return None if metrics is None else dumps(metrics)

    def key(self) -> tuple[Any, ...]:
        """Everything the state holds, as comparable values (JSON as text: 1 is not 1.0)."""
        return (self.config_text(), self.revision, self.registered_at, self.updated_at, self.ab)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folded) and self.key() == other.key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    # ------------------------------------------------------------ domain conversions

    @classmethod
    def from_domain(cls, state: ModelState) -> Folded:
        ab = state.ab_test
        return cls(
            state.config.model_dump(mode="json", by_alias=True, exclude_none=True),
            state.revision,
            iso(state.registered_at) or "",
            iso(state.updated_at) or "",
            None
            if ab is None
            else (
                ab.test_id,
                ab.champion_model_id,
                float(ab.traffic_percentage),
                ab.routing,
                ab.split_version,
                iso(ab.started_at) or "",
            ),
        )

    def domain(self) -> ModelState:
        """The domain's ``ModelState`` of this state (its config validated again)."""
        ab = self.ab
        return ModelState(
            ModelConfig.model_validate(self.config),
            self.revision,
            datetime.fromisoformat(self.registered_at),
            datetime.fromisoformat(self.updated_at),
            None
            if ab is None
            else ActiveABTest(ab[0], ab[1], ab[2], ab[3], ab[4], datetime.fromisoformat(ab[5])),
        )


@dataclass(slots=True)
class FoldState:
    """Every model's ``Folded`` state, keyed by model id, and the registry-wide revision."""

    models: dict[str, Folded] = field(default_factory=dict)
    registry_revision: int = 0

    @classmethod
    def from_domain(cls, registry: RegistryState) -> FoldState:
        return cls(
            {mid: Folded.from_domain(s) for mid, s in registry.models.items()},
            registry.registry_revision,
        )

    def domain(self) -> RegistryState:
        """The domain's view of this state (validates every config: for tests and tools)."""
        return RegistryState(
            {mid: f.domain() for mid, f in self.models.items()}, self.registry_revision
        )
