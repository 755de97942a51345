"""The registry's rules as pure functions: ``decide`` and ``evolve``.

- ``decide(command, registry, now=..., allow_clear=...)`` returns the events the command
  causes (at most one; none for a no-op) or a ``Rejection``. It reads the whole registry
  view because A/B rules span two models.
- ``evolve(state, event)`` returns a model's next state. It checks that the event's revision
  is the model's next one and raises ``RevisionGap`` otherwise, so a stray writer is detected.

No I/O, no clock, no randomness: time comes in as ``now`` and event ids derive from the
command id, so deciding the same command twice yields the same events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from registry.domain.errors import Rejection, RejectionCode
from registry.domain.messages import (
    REGISTRY_KEY,
    ABTestStarted,
    ABTestStartedPayload,
    ABTestStopped,
    ABTestStoppedPayload,
    ABTestTrafficChanged,
    ABTestTrafficChangedPayload,
    ChangeABTraffic,
    ChangeStatus,
    ClearRegistry,
    CommandBase,
    ConfigChanges,
    EventBase,
    ModelConfigUpdated,
    ModelMetricsRecorded,
    ModelRegistered,
    ModelStatusChanged,
    ModelStatusChangedPayload,
    ModelUnregistered,
    ModelUnregisteredPayload,
    ModelVersionReleased,
    ModelVersionReleasedPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    RegistryCleared,
    RegistryClearedPayload,
    ReleaseVersion,
    StartABTest,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.domain.types import ABTestConfig, ModelConfig, SemVer, Status

__all__ = [
    "LEGAL_TRANSITIONS",
    "INITIAL_STATUSES",
    "ActiveABTest",
    "ModelState",
    "RegistryState",
    "RevisionGap",
    "ab_test_id",
    "decide",
    "evolve",
]

LEGAL_TRANSITIONS: frozenset[tuple[Status, Status]] = frozenset(
    {
        (Status.TRAINING, Status.TESTING),
        (Status.TESTING, Status.ACTIVE),
        (Status.TESTING, Status.TRAINING),
        (Status.ACTIVE, Status.DEPRECATED),
        (Status.ACTIVE, Status.TRAINING),
        (Status.DEPRECATED, Status.UNREGISTERED),
    }
)
INITIAL_STATUSES = frozenset({Status.TRAINING, Status.TESTING, Status.ACTIVE})
_EVENT_NS = uuid.UUID("6f1c1f0e-3c1b-4f6e-9d0a-2f8f4a1e7b55")


class RevisionGap(Exception):
    """An event is not the next in its model's sequence (a stray writer or a lost event)."""

    code = "RevisionGap"

    def __init__(self, model_id: str, expected: int, got: int) -> None:
        super().__init__(f"model '{model_id}': expected revision {expected}, got {got}")
        self.model_id, self.expected, self.got = model_id, expected, got


@dataclass(frozen=True, slots=True)
class ActiveABTest:
    """A running champion/challenger test, held by the challenger."""

    test_id: str
    champion_model_id: str
    traffic_percentage: float
    routing: str
    split_version: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class ModelState:
    """A model's current state: its config (which holds the status) and its revision."""

    config: ModelConfig
    revision: int
    registered_at: datetime
    updated_at: datetime
    ab_test: ActiveABTest | None = None

    @property
    def model_id(self) -> str:
        return self.config.id

    @property
    def status(self) -> Status:
        return self.config.status

    @property
    def live(self) -> bool:
        """Registered and not unregistered."""
        return self.config.status is not Status.UNREGISTERED


@dataclass(slots=True)
class RegistryState:
    """The models an adapter (decider, projector, predictor) holds, folded from events.

    A mutable container of immutable ``ModelState`` values; ``apply`` is the one way in.
    """

    models: dict[str, ModelState] = field(default_factory=dict)
    registry_revision: int = 0

    def revision_of(self, model_id: str) -> int:
        if model_id == REGISTRY_KEY:
            return self.registry_revision
        state = self.models.get(model_id)
        return state.revision if state else 0

    def apply(self, event: EventBase) -> None:
        """Fold one event in; raises ``RevisionGap`` if it is not the model's next."""
        if isinstance(event, RegistryCleared):
            _expect_next(REGISTRY_KEY, self.registry_revision, event.revision)
            self.registry_revision = event.revision
            for model_id, state in self.models.items():
                if state.live:
                    self.models[model_id] = _unregistered(state, event.occurred_at)
            return
        new = evolve(self.models.get(event.model_id), event)
        if new is not None:
            self.models[event.model_id] = new

    def challenger_of(self, champion_id: str) -> ModelState | None:
        """The live model running an A/B test against ``champion_id``, if any."""
        for state in self.models.values():
            if state.ab_test is not None and state.ab_test.champion_model_id == champion_id:
                return state
        return None


def ab_test_id(challenger_id: str, revision: int) -> str:
    """The id of the test started by the challenger's event at ``revision``."""
    return f"ab:{challenger_id}:{revision}"


def _expect_next(model_id: str, current: int, got: int) -> None:
    if got != current + 1:
        raise RevisionGap(model_id, current + 1, got)


def _unregistered(state: ModelState, at: datetime) -> ModelState:
    config = state.config.model_copy(update={"status": Status.UNREGISTERED, "ab_test": None})
    return replace(state, config=config, ab_test=None, updated_at=at)


def _apply_changes(config: ModelConfig, changes: ConfigChanges) -> ModelConfig:
    update = {name: getattr(changes, name) for name in changes.model_fields_set}
    return config.model_copy(update=update) if update else config


# --------------------------------------------------------------------------- evolve


def evolve(state: ModelState | None, event: EventBase) -> ModelState | None:
    """The model's state after ``event``. Pure; raises ``RevisionGap`` on a sequence break."""
    current = state.revision if state else 0
    _expect_next(event.model_id, current, event.revision)
    at = event.occurred_at
    if isinstance(event, ModelRegistered):
        cfg = event.payload
        ab = None
        if cfg.ab_test is not None and cfg.ab_test.enabled:
            ab = ActiveABTest(
                test_id=ab_test_id(cfg.id, event.revision),
                champion_model_id=cfg.ab_test.champion_model_id,
                traffic_percentage=cfg.ab_test.traffic_percentage,
                routing=cfg.ab_test.routing,
                split_version=1,
                started_at=at,
            )
        return ModelState(config=cfg, revision=event.revision, registered_at=at, updated_at=at, ab_test=ab)
    if state is None:
        # A non-registration event for an unknown model: the log is broken here.
        raise RevisionGap(event.model_id, 1, event.revision)
    return _evolve_existing(state, event, at)


def _evolve_existing(state: ModelState, event: EventBase, at: datetime) -> ModelState:
    cfg = state.config
    ab = state.ab_test
    if isinstance(event, ModelVersionReleased):
        p = event.payload
        cfg = _apply_changes(cfg, p.changes)
        update: dict[str, Any] = {"version": p.version, "status": p.status}
        if p.metrics is not None:
            update["metrics"] = p.metrics
        cfg = cfg.model_copy(update=update)
    elif isinstance(event, ModelStatusChanged):
        cfg = cfg.model_copy(update={"status": event.payload.to_status})
    elif isinstance(event, ModelMetricsRecorded):
        cfg = cfg.model_copy(update={"metrics": event.payload.metrics})
    elif isinstance(event, ModelConfigUpdated):
        cfg = _apply_changes(cfg, event.payload.changes)
    elif isinstance(event, ABTestStarted):
        p = event.payload
        ab = ActiveABTest(p.test_id, p.champion_model_id, p.traffic_percentage, p.routing, p.split_version, at)
        cfg = cfg.model_copy(update={"ab_test": _ab_config(ab)})
    elif isinstance(event, ABTestTrafficChanged) and ab is not None:
        ab = replace(ab, traffic_percentage=event.payload.traffic_percentage, split_version=event.payload.split_version)
        cfg = cfg.model_copy(update={"ab_test": _ab_config(ab)})
    elif isinstance(event, ABTestStopped):
        ab = None
        cfg = cfg.model_copy(update={"ab_test": None})
    elif isinstance(event, ModelUnregistered):
        return replace(_unregistered(state, at), revision=event.revision)
    return ModelState(config=cfg, revision=event.revision, registered_at=state.registered_at, updated_at=at, ab_test=ab)


def _ab_config(ab: ActiveABTest) -> ABTestConfig:
    return ABTestConfig(
        enabled=True,
        traffic_percentage=ab.traffic_percentage,
        champion_model_id=ab.champion_model_id,
        routing=ab.routing,
    )


# --------------------------------------------------------------------------- decide

Decision = tuple[EventBase, ...] | Rejection


def _reject(code: RejectionCode, message: str, field: str | None = None) -> Rejection:
    return Rejection(code, message, field)


def _event_kwargs(cmd: CommandBase, revision: int, now: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(_EVENT_NS, cmd.id)),
        "model_id": cmd.model_id,
        "revision": revision,
        "occurred_at": now,
        "actor": cmd.actor,
        "correlation_id": cmd.correlation_id or cmd.id,
        "causation_id": cmd.id,
    }


def decide(
    command: CommandBase,
    registry: RegistryState,
    *,
    now: datetime,
    allow_clear: bool = False,
) -> Decision:
    """The events ``command`` causes against ``registry``, or why it is refused."""
    current = registry.revision_of(command.model_id)
    if command.expected_revision is not None and command.expected_revision != current:
        return _reject(
            RejectionCode.VERSION_CONFLICT,
            f"'{command.model_id}' is at revision {current}, not the expected "
            f"{command.expected_revision}; re-read the model and retry.",
        )
    if isinstance(command, ClearRegistry):
        return _decide_clear(command, registry, now, allow_clear)
    state = registry.models.get(command.model_id)
    if isinstance(command, RegisterModel):
        return _decide_register(command, state, registry, now)
    if state is None:
        return _reject(RejectionCode.MODEL_NOT_FOUND, f"no model '{command.model_id}' is registered.")
    if not state.live:
        return _reject(
            RejectionCode.MODEL_UNREGISTERED,
            f"model '{command.model_id}' was unregistered; register it again to use it.",
        )
    handler = _HANDLERS[type(command)]
    return handler(command, state, registry, now)


def _decide_clear(cmd: ClearRegistry, registry: RegistryState, now: datetime, allow_clear: bool) -> Decision:
    if not allow_clear:
        return _reject(
            RejectionCode.CLEAR_NOT_ALLOWED,
            "clearing the registry is for tests only; start the decider with "
            "REGISTRY_ALLOW_CLEAR=1 to allow it.",
        )
    live = sorted(mid for mid, s in registry.models.items() if s.live)
    payload = RegistryClearedPayload(reason=cmd.payload.reason, model_ids=live)
    return (RegistryCleared(payload=payload, **_event_kwargs(cmd, registry.registry_revision + 1, now)),)


def _decide_register(cmd: RegisterModel, state: ModelState | None, registry: RegistryState, now: datetime) -> Decision:
    cfg = cmd.payload
    if state is not None and state.live:
        return _decide_reregister(cfg, state)
    if cfg.status not in INITIAL_STATUSES:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"a new model starts as training, testing or active, not {cfg.status}.",
            "status",
        )
    if state is not None:
        new, old = SemVer(cfg.version), SemVer(state.config.version)
        if new < old:
            return _reject(
                RejectionCode.VERSION_REGRESSION,
                f"'{cfg.id}' was at {old}; a version never goes backwards.",
                "version",
            )
        if new.major != old.major:
            return _reject(
                RejectionCode.MAJOR_VERSION_MISMATCH,
                f"'{cfg.id}' carries major version {old.major}; a major change is a new model id.",
                "version",
            )
    if cfg.ab_test is not None and cfg.ab_test.enabled:
        problem = _ab_problem(cfg.id, cfg, cfg.status, cfg.ab_test.champion_model_id, registry)
        if problem:
            return problem
    revision = (state.revision if state else 0) + 1
    return (ModelRegistered(payload=cfg, **_event_kwargs(cmd, revision, now)),)


def _decide_reregister(cfg: ModelConfig, state: ModelState) -> Decision:
    if cfg == state.config or cfg.wire() == state.config.wire():
        return ()  # identical registration: a no-op
    new, old = SemVer(cfg.version), SemVer(state.config.version)
    if new < old:
        return _reject(
            RejectionCode.VERSION_REGRESSION,
            f"'{cfg.id}' is at {old}; {new} would go backwards.",
            "version",
        )
    if new.major != old.major:
        return _reject(
            RejectionCode.MAJOR_VERSION_MISMATCH,
            f"'{cfg.id}' carries major version {old.major}; register {new} under a new model id.",
            "version",
        )
    hint = "release it with ReleaseVersion" if new > old else "change it with UpdateConfig"
    return _reject(
        RejectionCode.MODEL_ALREADY_REGISTERED,
        f"'{cfg.id}' is already registered at {old} with a different config; {hint}.",
    )


def _ab_problem(
    challenger_id: str,
    challenger_cfg: ModelConfig,
    challenger_status: Status,
    champion_id: str,
    registry: RegistryState,
) -> Rejection | None:
    invalid = RejectionCode.AB_TEST_INVALID
    if champion_id == challenger_id:
        return _reject(invalid, "a model cannot be its own champion.", "championModelId")
    champion = registry.models.get(champion_id)
    if champion is None or not champion.live:
        return _reject(invalid, f"champion '{champion_id}' is not registered.", "championModelId")
    if champion.status is not Status.ACTIVE:
        return _reject(invalid, f"champion '{champion_id}' is {champion.status}; it must be active.", "championModelId")
    if challenger_status is not Status.ACTIVE:
        return _reject(invalid, f"challenger '{challenger_id}' is {challenger_status}; it must be active.", "status")
    if champion.config.type != challenger_cfg.type:
        return _reject(
            invalid,
            f"champion '{champion_id}' is {champion.config.type} but challenger "
            f"'{challenger_id}' is {challenger_cfg.type}; both must share a type.",
            "type",
        )
    if champion.ab_test is not None:
        return _reject(invalid, f"'{champion_id}' is itself a challenger in {champion.ab_test.test_id}.", "championModelId")
    if registry.challenger_of(challenger_id) is not None:
        return _reject(invalid, f"'{challenger_id}' is a champion in a running test.", "championModelId")
    other = registry.challenger_of(champion_id)
    if other is not None and other.model_id != challenger_id:
        return _reject(
            RejectionCode.AB_TEST_CONFLICT,
            f"champion '{champion_id}' already has challenger '{other.model_id}'; stop that test first.",
        )
    return None


def _running_test_blocks(state: ModelState, registry: RegistryState, what: str) -> Rejection | None:
    if state.ab_test is not None:
        return _reject(
            RejectionCode.AB_TEST_RUNNING,
            f"'{state.model_id}' is the challenger in {state.ab_test.test_id}; stop the test before {what}.",
        )
    challenger = registry.challenger_of(state.model_id)
    if challenger is not None and challenger.ab_test is not None:
        return _reject(
            RejectionCode.AB_TEST_RUNNING,
            f"'{state.model_id}' is the champion in {challenger.ab_test.test_id}; stop the test before {what}.",
        )
    return None


def _decide_release(cmd: ReleaseVersion, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    p = cmd.payload
    new, old = SemVer(p.version), SemVer(state.config.version)
    if new <= old:
        return _reject(
            RejectionCode.VERSION_REGRESSION,
            f"'{cmd.model_id}' is at {old}; a release must be higher than that, not {new}.",
            "version",
        )
    if new.major != old.major:
        return _reject(
            RejectionCode.MAJOR_VERSION_MISMATCH,
            f"'{cmd.model_id}' carries major version {old.major}; release {new} under a new model id.",
            "version",
        )
    if state.status is Status.DEPRECATED:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is deprecated; release new work under a model that is not.",
        )
    status = p.status or state.status
    if status not in INITIAL_STATUSES:
        return _reject(RejectionCode.INVALID_TRANSITION, f"a release starts as training, testing or active, not {status}.", "status")
    if status is not Status.ACTIVE:
        blocked = _running_test_blocks(state, registry, f"releasing {new} as {status}")
        if blocked:
            return blocked
    payload = ModelVersionReleasedPayload(
        version=p.version, previous_version=state.config.version, status=status, metrics=p.metrics, changes=p.changes
    )
    return (ModelVersionReleased(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_status(cmd: ChangeStatus, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    to = cmd.payload.status
    if to is state.status:
        return ()
    if to is Status.UNREGISTERED:
        return _reject(RejectionCode.INVALID_TRANSITION, "use UnregisterModel to unregister a deprecated model.", "status")
    if (state.status, to) not in LEGAL_TRANSITIONS:
        allowed = sorted(str(b) for a, b in LEGAL_TRANSITIONS if a is state.status and b is not Status.UNREGISTERED)
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' cannot go from {state.status} to {to}; from {state.status} it may go to "
            f"{', '.join(allowed) or 'unregistered (UnregisterModel)'}.",
            "status",
        )
    if state.status is Status.ACTIVE:
        blocked = _running_test_blocks(state, registry, f"moving it to {to}")
        if blocked:
            return blocked
    payload = ModelStatusChangedPayload(**{"from": state.status, "to": to, "reason": cmd.payload.reason})
    return (ModelStatusChanged(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_metrics(cmd: RecordMetrics, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    payload = RecordMetricsPayload(metrics=cmd.payload.metrics)
    return (ModelMetricsRecorded(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_update(cmd: UpdateConfig, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    changes = cmd.payload.changes
    if changes.is_empty():
        return _reject(RejectionCode.INVALID_COMMAND, "UpdateConfig needs at least one field in 'changes'.", "changes")
    if _apply_changes(state.config, changes).wire() == state.config.wire():
        return ()
    payload = UpdateConfigPayload(changes=changes)
    return (ModelConfigUpdated(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_ab_start(cmd: StartABTest, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    p = cmd.payload
    if state.ab_test is not None:
        if state.ab_test.champion_model_id == p.champion_model_id and state.ab_test.traffic_percentage == p.traffic_percentage:
            return ()
        return _reject(
            RejectionCode.AB_TEST_CONFLICT,
            f"'{cmd.model_id}' already runs {state.ab_test.test_id}; change its traffic or stop it first.",
        )
    problem = _ab_problem(cmd.model_id, state.config, state.status, p.champion_model_id, registry)
    if problem:
        return problem
    revision = state.revision + 1
    payload = ABTestStartedPayload(
        test_id=ab_test_id(cmd.model_id, revision),
        champion_model_id=p.champion_model_id,
        traffic_percentage=p.traffic_percentage,
        routing=p.routing,
    )
    return (ABTestStarted(payload=payload, **_event_kwargs(cmd, revision, now)),)


def _decide_ab_traffic(cmd: ChangeABTraffic, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    ab = state.ab_test
    if ab is None:
        return _reject(RejectionCode.AB_TEST_NOT_RUNNING, f"'{cmd.model_id}' runs no A/B test as challenger.")
    if ab.traffic_percentage == cmd.payload.traffic_percentage:
        return ()
    payload = ABTestTrafficChangedPayload(
        test_id=ab.test_id,
        previous_percentage=ab.traffic_percentage,
        traffic_percentage=cmd.payload.traffic_percentage,
        split_version=ab.split_version + 1,
    )
    return (ABTestTrafficChanged(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_ab_stop(cmd: StopABTest, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    if state.ab_test is None:
        return _reject(RejectionCode.AB_TEST_NOT_RUNNING, f"'{cmd.model_id}' runs no A/B test as challenger.")
    payload = ABTestStoppedPayload(test_id=state.ab_test.test_id, reason=cmd.payload.reason)
    return (ABTestStopped(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


def _decide_unregister(cmd: UnregisterModel, state: ModelState, registry: RegistryState, now: datetime) -> Decision:
    if state.status is not Status.DEPRECATED:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is {state.status}; only a deprecated model can be unregistered.",
            "status",
        )
    payload = ModelUnregisteredPayload(version=state.config.version, reason=cmd.payload.reason)
    return (ModelUnregistered(payload=payload, **_event_kwargs(cmd, state.revision + 1, now)),)


_HANDLERS: Mapping[type[CommandBase], Any] = {
    ReleaseVersion: _decide_release,
    ChangeStatus: _decide_status,
    RecordMetrics: _decide_metrics,
    UpdateConfig: _decide_update,
    StartABTest: _decide_ab_start,
    ChangeABTraffic: _decide_ab_traffic,
    StopABTest: _decide_ab_stop,
    UnregisterModel: _decide_unregister,
}
