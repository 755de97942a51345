"""The registry's rules as a pure function: ``decide`` (docs/design.md#rules).

``decide(command, registry, now=..., allow_clear=...)`` returns the events the command
causes (at most one; none for a no-op) or a ``Rejection``. It reads the whole registry view
because A/B rules span two models. What an event then does to the state is
``registry.core.state.evolve``, the one fold every reader shares.

No I/O, no clock, no randomness: time comes in as ``now`` and event ids derive from the
command id, so deciding the same command twice yields the same events. Each command's rule
is declared with the command class it decides (``@_decides``); ``decide`` has no list of
its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from registry.core.errors import Rejection, RejectionCode
from registry.core.messages import (
    COMMANDS,
    ABTestStarted,
    ABTestStartedPayload,
    ABTestStopped,
    ABTestStoppedPayload,
    ABTestTrafficChanged,
    ABTestTrafficChangedPayload,
    AliasAssigned,
    AliasAssignedPayload,
    AliasPayload,
    AliasRemoved,
    AssignAlias,
    ChallengerPromoted,
    ChallengerPromotedPayload,
    ChangeABTraffic,
    ChangeStatus,
    ClearRegistry,
    CommandBase,
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
    PromoteChallenger,
    PromotionRolledBack,
    PromotionRolledBackPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    RegistryCleared,
    RegistryClearedPayload,
    ReleaseVersion,
    RemoveAlias,
    RollbackPromotion,
    StartABTest,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.state import ModelState, RegistryState, ab_test_id, apply_changes
from registry.core.types import Metrics, Provider, ProviderConfig, SemVer, Status

__all__ = [
    "INITIAL_STATUSES",
    "LEGAL_TRANSITIONS",
    "Decision",
    "decide",
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

Decision = tuple[EventBase, ...] | Rejection
C = TypeVar("C", bound=CommandBase)


@dataclass(frozen=True, slots=True)
class _Context:
    """What every rule may read besides the command."""

    registry: RegistryState
    now: datetime
    allow_clear: bool

    def event(self, cmd: CommandBase, revision: int) -> dict[str, Any]:
        """The envelope of the event ``cmd`` causes at ``revision`` (ids derive from cmd)."""
        return {
            "id": str(uuid.uuid5(_EVENT_NS, cmd.id)),
            "model_id": cmd.model_id,
            "revision": revision,
            "occurred_at": self.now,
            "actor": cmd.actor,
            "correlation_id": cmd.correlation_id or cmd.id,
            "causation_id": cmd.id,
        }


Rule = Callable[[Any, _Context], Decision]
_RULES: dict[type[CommandBase], Rule] = {}


def _decides(command: type[C], *, on_live_model: bool = True) -> Callable[[Rule], Rule]:
    """Declare the rule of ``command``. ``on_live_model``: the command needs its model
    registered and not unregistered (the rule then gets its state as ``ctx`` allows)."""

    def register(rule: Rule) -> Rule:
        if not on_live_model:
            _RULES[command] = rule
            return rule

        def guarded(cmd: CommandBase, ctx: _Context) -> Decision:
            state = ctx.registry.models.get(cmd.model_id)
            if state is None:
                return _reject(
                    RejectionCode.MODEL_NOT_FOUND, f"no model '{cmd.model_id}' is registered."
                )
            if not state.live:
                return _reject(
                    RejectionCode.MODEL_UNREGISTERED,
                    f"model '{cmd.model_id}' was unregistered; register it again to use it.",
                )
            return rule(cmd, ctx)

        _RULES[command] = guarded
        return rule

    return register


def _reject(code: RejectionCode, message: str, field: str | None = None) -> Rejection:
    return Rejection(code, message, field)


def _state(cmd: CommandBase, ctx: _Context) -> ModelState:
    """The live state of the command's model (guarded by ``_decides``)."""
    return ctx.registry.models[cmd.model_id]


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
    return _RULES[type(command)](command, _Context(registry, now, allow_clear))


# --------------------------------------------------------------------------- registry-wide


@_decides(ClearRegistry, on_live_model=False)
def _clear(cmd: ClearRegistry, ctx: _Context) -> Decision:
    if not ctx.allow_clear:
        return _reject(
            RejectionCode.CLEAR_NOT_ALLOWED,
            "clearing the registry is for tests only; start the decider with "
            "REGISTRY_DECIDER_ALLOW_CLEAR=1 to allow it.",
        )
    live = sorted(mid for mid, s in ctx.registry.models.items() if s.live)
    payload = RegistryClearedPayload(reason=cmd.payload.reason, model_ids=live)
    revision = ctx.registry.registry_revision + 1
    return (RegistryCleared(payload=payload, **ctx.event(cmd, revision)),)


# --------------------------------------------------------------------------- registration


def _version_problem(
    model_id: str, new: SemVer, old: SemVer, *, equal_ok: bool
) -> Rejection | None:
    if new < old or (new == old and not equal_ok):
        return _reject(
            RejectionCode.VERSION_REGRESSION,
            f"'{model_id}' is at {old}; a version never goes backwards, and {new} is not higher.",
            "version",
        )
    if new.major != old.major:
        return _reject(
            RejectionCode.MAJOR_VERSION_MISMATCH,
            f"'{model_id}' carries major version {old.major}; {new} belongs under a new model id.",
            "version",
        )
    return None


@_decides(RegisterModel, on_live_model=False)
def _register(cmd: RegisterModel, ctx: _Context) -> Decision:
    cfg = cmd.payload
    state = ctx.registry.models.get(cmd.model_id)
    if state is not None and state.live:
        return _reregister(cmd, state)
    if cfg.status not in INITIAL_STATUSES:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"a new model starts as training, testing or active, not {cfg.status}.",
            "status",
        )
    if state is not None:
        problem = _version_problem(
            cfg.id, SemVer(cfg.version), SemVer(state.version), equal_ok=True
        )
        if problem:
            return problem
    problem = _provider_config_problem(
        cfg.provider_config, cfg.provider, cfg.endpoint, cfg.credentials
    )
    if problem:
        return problem
    if cfg.ab_test is not None and cfg.ab_test.enabled:
        champion = cfg.ab_test.champion_model_id
        problem = _ab_problem(cfg.id, str(cfg.type), cfg.status, champion, ctx.registry)
        if problem:
            return problem
    revision = (state.revision if state else 0) + 1
    return (ModelRegistered(payload=cfg, **ctx.event(cmd, revision)),)


def _reregister(cmd: RegisterModel, state: ModelState) -> Decision:
    cfg = cmd.payload
    if cfg.wire() == state.wire:
        return ()  # identical registration: a no-op
    new, old = SemVer(cfg.version), SemVer(state.version)
    problem = _version_problem(cfg.id, new, old, equal_ok=True)
    if problem:
        return problem
    hint = "release it with ReleaseVersion" if new > old else "change it with UpdateConfig"
    return _reject(
        RejectionCode.MODEL_ALREADY_REGISTERED,
        f"'{cfg.id}' is already registered at {old} with a different config; {hint}.",
    )


_CALLABLE = re.compile(
    r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$"  # module:function
    r"|^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # an entry point's name
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_PROVIDERS = frozenset({Provider.SCIKIT_LEARN, Provider.PYTORCH, Provider.TENSORFLOW})


def _provider_config_problem(
    pc: ProviderConfig | None,
    provider: Provider | None = None,
    endpoint: str | None = None,
    credentials: dict[str, str] | None = None,
) -> Rejection | None:
    """What the decider can tell of a provider config (docs/security.md): its shape, and
    what its provider cannot work without (``registry.core.provider_checks``), given the
    model's top-level ``provider``, ``endpoint`` and ``credentials`` as they are (or will be,
    after the change). The prediction consumer checks everything again against the
    operator's grants."""
    from registry.core.provider_checks import provider_problem

    if pc is None:
        return None
    problem = provider_problem(pc, provider, endpoint=endpoint, credentials=credentials)
    if problem:
        return problem
    settings = pc.settings
    target = settings.get("callable")
    if target is not None and (not isinstance(target, str) or not _CALLABLE.match(target)):
        return _reject(
            RejectionCode.INVALID_COMMAND,
            "providerConfig.callable names an entry point of 'model_registry.callables' or a "
            "'package.module:function' the operator granted.",
            "providerConfig.callable",
        )
    digest = settings.get("modelSha256")
    if digest is not None and (not isinstance(digest, str) or not _SHA256.match(digest)):
        return _reject(
            RejectionCode.INVALID_COMMAND,
            "providerConfig.modelSha256 is the model file's SHA-256: 64 lowercase hex digits.",
            "providerConfig.modelSha256",
        )
    return None


@_decides(ReleaseVersion)
def _release(cmd: ReleaseVersion, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    p = cmd.payload
    problem = _version_problem(
        cmd.model_id, SemVer(p.version), SemVer(state.version), equal_ok=False
    )
    if problem:
        return problem
    if state.status is Status.DEPRECATED:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is deprecated; release new work under a model that is not.",
        )
    problem = _provider_config_problem(
        p.changes.provider_config,
        state.provider,
        p.changes.endpoint or state.wire.get("endpoint"),
        p.changes.credentials or state.wire.get("credentials"),
    )
    if problem:
        return problem
    status = p.status or state.status
    if status not in INITIAL_STATUSES:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"a release starts as training, testing or active, not {status}.",
            "status",
        )
    if status is not Status.ACTIVE:
        blocked = _running_test_blocks(state, ctx.registry, f"releasing {p.version} as {status}")
        if blocked:
            return blocked
        blocked = _aliases_block(state, f"releasing {p.version} as {status}")
        if blocked:
            return blocked
    payload = ModelVersionReleasedPayload(
        version=p.version,
        previous_version=state.version,
        status=status,
        metrics=p.metrics,
        changes=p.changes,
        resets_metrics=True,
    )
    return (ModelVersionReleased(payload=payload, **ctx.event(cmd, state.revision + 1)),)


# --------------------------------------------------------------------------- lifecycle


@_decides(ChangeStatus)
def _status(cmd: ChangeStatus, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    to = cmd.payload.status
    if to is state.status:
        return ()
    if to is Status.UNREGISTERED:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            "use UnregisterModel to unregister a deprecated model.",
            "status",
        )
    if (state.status, to) not in LEGAL_TRANSITIONS:
        allowed = sorted(
            str(b)
            for a, b in LEGAL_TRANSITIONS
            if a is state.status and b is not Status.UNREGISTERED
        )
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' cannot go from {state.status} to {to}; from {state.status} it may "
            f"go to {', '.join(allowed) or 'unregistered (UnregisterModel)'}.",
            "status",
        )
    if state.status is Status.ACTIVE:
        blocked = _running_test_blocks(state, ctx.registry, f"moving it to {to}")
        if blocked:
            return blocked
        blocked = _aliases_block(state, f"moving it to {to}")
        if blocked:
            return blocked
    payload = ModelStatusChangedPayload.model_validate(
        {"from": state.status, "to": to, "reason": cmd.payload.reason}
    )
    return (ModelStatusChanged(payload=payload, **ctx.event(cmd, state.revision + 1)),)


@_decides(UnregisterModel)
def _unregister(cmd: UnregisterModel, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    if state.status is not Status.DEPRECATED:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is {state.status}; only a deprecated model can be unregistered.",
            "status",
        )
    payload = ModelUnregisteredPayload(version=state.version, reason=cmd.payload.reason)
    return (ModelUnregistered(payload=payload, **ctx.event(cmd, state.revision + 1)),)


# --------------------------------------------------------------------------- metrics, config


@_decides(RecordMetrics)
def _metrics(cmd: RecordMetrics, ctx: _Context) -> Decision:
    """The event holds the whole resulting set: the recorded metrics merged into the current
    ones (or replacing them), so the fold and every reader see one value."""
    state = _state(cmd, ctx)
    given = cmd.payload.metrics.wire()
    current = state.metrics or {}
    merged = given if cmd.payload.replace else {**current, **given}
    if merged == current and state.metrics is not None:
        return ()
    metrics = Metrics.model_validate(merged)
    payload = RecordMetricsPayload(metrics=metrics)
    return (ModelMetricsRecorded(payload=payload, **ctx.event(cmd, state.revision + 1)),)


@_decides(UpdateConfig)
def _update(cmd: UpdateConfig, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    changes = cmd.payload.changes
    if changes.is_empty():
        return _reject(
            RejectionCode.INVALID_COMMAND,
            "UpdateConfig needs at least one field in 'changes'.",
            "changes",
        )
    problem = _provider_config_problem(
        changes.provider_config,
        state.provider,
        changes.endpoint or state.wire.get("endpoint"),
        changes.credentials or state.wire.get("credentials"),
    )
    if problem:
        return problem
    if apply_changes(state.wire, changes.wire()) == state.wire:
        return ()
    payload = UpdateConfigPayload(changes=changes)
    return (ModelConfigUpdated(payload=payload, **ctx.event(cmd, state.revision + 1)),)


# --------------------------------------------------------------------------- A/B tests


def _ab_problem(  # noqa: C901 - one check per rule of a test
    challenger_id: str,
    challenger_type: str,
    challenger_status: Status,
    champion_id: str,
    registry: RegistryState,
    *,
    shadow: bool = False,
) -> Rejection | None:
    invalid = RejectionCode.AB_TEST_INVALID
    if champion_id == challenger_id:
        return _reject(invalid, "a model cannot be its own champion.", "championModelId")
    champion = registry.models.get(champion_id)
    if champion is None or not champion.live:
        return _reject(invalid, f"champion '{champion_id}' is not registered.", "championModelId")
    if champion.status is not Status.ACTIVE:
        return _reject(
            invalid,
            f"champion '{champion_id}' is {champion.status}; it must be active.",
            "championModelId",
        )
    if shadow and challenger_status not in (Status.TESTING, Status.ACTIVE):
        return _reject(
            invalid,
            f"challenger '{challenger_id}' is {challenger_status}; a shadow challenger must be "
            "testing or active.",
            "status",
        )
    if not shadow and challenger_status is not Status.ACTIVE:
        return _reject(
            invalid,
            f"challenger '{challenger_id}' is {challenger_status}; it must be active "
            "(or run a shadow test, mode 'shadow', while it is testing).",
            "status",
        )
    if champion.served_by is not None:
        return _reject(
            invalid,
            f"champion '{champion_id}' was promoted over by '{champion.served_by}'.",
            "championModelId",
        )
    if str(champion.type) != challenger_type:
        return _reject(
            invalid,
            f"champion '{champion_id}' is {champion.type} but challenger "
            f"'{challenger_id}' is {challenger_type}; both must share a type.",
            "type",
        )
    if champion.ab_test is not None:
        return _reject(
            invalid,
            f"'{champion_id}' is itself a challenger in {champion.ab_test.test_id}.",
            "championModelId",
        )
    if registry.challenger_of(challenger_id) is not None:
        return _reject(
            invalid, f"'{challenger_id}' is a champion in a running test.", "championModelId"
        )
    other = registry.challenger_of(champion_id)
    if other is not None and other.model_id != challenger_id:
        return _reject(
            RejectionCode.AB_TEST_CONFLICT,
            f"champion '{champion_id}' already has challenger '{other.model_id}'; "
            "stop that test first.",
        )
    return None


def _running_test_blocks(state: ModelState, registry: RegistryState, what: str) -> Rejection | None:
    if state.ab_test is not None:
        return _reject(
            RejectionCode.AB_TEST_RUNNING,
            f"'{state.model_id}' is the challenger in {state.ab_test.test_id}; "
            f"stop the test before {what}.",
        )
    challenger = registry.challenger_of(state.model_id)
    if challenger is not None and challenger.ab_test is not None:
        return _reject(
            RejectionCode.AB_TEST_RUNNING,
            f"'{state.model_id}' is the champion in {challenger.ab_test.test_id}; "
            f"stop the test before {what}.",
        )
    return None


@_decides(StartABTest)
def _ab_start(cmd: StartABTest, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    p = cmd.payload
    running = state.ab_test
    if running is not None:
        if (
            running.champion_model_id == p.champion_model_id
            and running.traffic_percentage == p.traffic_percentage
            and running.mode == p.mode
            and running.guardrails_wire() == (p.guardrails.wire() if p.guardrails else None)
        ):
            return ()
        return _reject(
            RejectionCode.AB_TEST_CONFLICT,
            f"'{cmd.model_id}' already runs {running.test_id}; "
            "change its traffic or stop it first.",
        )
    problem = _ab_problem(
        cmd.model_id,
        str(state.type),
        state.status,
        p.champion_model_id,
        ctx.registry,
        shadow=p.mode == "shadow",
    )
    if problem:
        return problem
    revision = state.revision + 1
    payload = ABTestStartedPayload(
        test_id=ab_test_id(cmd.model_id, revision),
        champion_model_id=p.champion_model_id,
        traffic_percentage=p.traffic_percentage,
        routing=p.routing,
        mode="shadow" if p.mode == "shadow" else None,
        guardrails=p.guardrails,
    )
    return (ABTestStarted(payload=payload, **ctx.event(cmd, revision)),)


@_decides(ChangeABTraffic)
def _ab_traffic(cmd: ChangeABTraffic, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    ab = state.ab_test
    if ab is None:
        return _reject(
            RejectionCode.AB_TEST_NOT_RUNNING, f"'{cmd.model_id}' runs no A/B test as challenger."
        )
    if ab.traffic_percentage == cmd.payload.traffic_percentage:
        return ()
    payload = ABTestTrafficChangedPayload(
        test_id=ab.test_id,
        previous_percentage=ab.traffic_percentage,
        traffic_percentage=cmd.payload.traffic_percentage,
        split_version=ab.split_version + 1,
        reason=cmd.payload.reason,
    )
    return (ABTestTrafficChanged(payload=payload, **ctx.event(cmd, state.revision + 1)),)


@_decides(StopABTest)
def _ab_stop(cmd: StopABTest, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    if state.ab_test is None:
        return _reject(
            RejectionCode.AB_TEST_NOT_RUNNING, f"'{cmd.model_id}' runs no A/B test as challenger."
        )
    payload = ABTestStoppedPayload(test_id=state.ab_test.test_id, reason=cmd.payload.reason)
    return (ABTestStopped(payload=payload, **ctx.event(cmd, state.revision + 1)),)


# --------------------------------------------------------------------------- promotion


@_decides(PromoteChallenger)
def _promote(cmd: PromoteChallenger, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    ab = state.ab_test
    if ab is None:
        return _reject(
            RejectionCode.AB_TEST_NOT_RUNNING,
            f"'{cmd.model_id}' runs no A/B test as challenger; only a challenger is promoted.",
        )
    if state.status is not Status.ACTIVE:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is {state.status}; activate it before promoting it (a shadow "
            "challenger is A/B tested first).",
            "status",
        )
    champion = ctx.registry.models.get(ab.champion_model_id)
    if champion is None or not champion.live or champion.status is not Status.ACTIVE:
        return _reject(
            RejectionCode.AB_TEST_INVALID,
            f"champion '{ab.champion_model_id}' is not active; stop the test instead.",
            "championModelId",
        )
    payload = ChallengerPromotedPayload(
        test_id=ab.test_id,
        champion_model_id=champion.model_id,
        champion_version=champion.version,
        version=state.version,
        aliases=list(champion.aliases),
        reason=cmd.payload.reason,
        evidence=cmd.payload.evidence,
    )
    return (ChallengerPromoted(payload=payload, **ctx.event(cmd, state.revision + 1)),)


@_decides(RollbackPromotion)
def _rollback(cmd: RollbackPromotion, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    previous = state.replaces
    if previous is None:
        return _reject(
            RejectionCode.NOTHING_TO_ROLL_BACK,
            f"'{cmd.model_id}' was not promoted over another model; nothing to roll back.",
        )
    restored = ctx.registry.models.get(previous)
    if restored is None or not restored.live or restored.served_by != state.model_id:
        return _reject(
            RejectionCode.NOTHING_TO_ROLL_BACK,
            f"'{previous}' no longer waits behind '{cmd.model_id}' (unregistered, or moved "
            "since); register or activate it instead.",
        )
    if state.status is not Status.ACTIVE:
        return _reject(
            RejectionCode.INVALID_TRANSITION,
            f"'{cmd.model_id}' is {state.status}; only the serving model is rolled back.",
            "status",
        )
    blocked = _running_test_blocks(state, ctx.registry, "rolling it back")
    if blocked:
        return blocked
    payload = PromotionRolledBackPayload(
        restored_model_id=restored.model_id,
        restored_version=restored.version,
        aliases=list(state.aliases),
        reason=cmd.payload.reason,
    )
    return (PromotionRolledBack(payload=payload, **ctx.event(cmd, state.revision + 1)),)


# --------------------------------------------------------------------------- aliases


def _aliases_block(state: ModelState, what: str) -> Rejection | None:
    """An alias names an active model only: refuse what would leave one on another."""
    if state.aliases:
        return _reject(
            RejectionCode.ALIAS_INVALID,
            f"'{state.model_id}' is named by {', '.join(state.aliases)}; move or remove "
            f"{'it' if len(state.aliases) == 1 else 'them'} before {what}.",
            "aliases",
        )
    return None


@_decides(AssignAlias)
def _assign_alias(cmd: AssignAlias, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    alias = cmd.payload.alias
    if state.status is not Status.ACTIVE:
        return _reject(
            RejectionCode.ALIAS_INVALID,
            f"'{cmd.model_id}' is {state.status}; an alias names an active model only.",
            "status",
        )
    holder = ctx.registry.aliases.get(alias)
    if holder == cmd.model_id:
        return ()
    payload = AliasAssignedPayload(alias=alias, previous_model_id=holder)
    return (AliasAssigned(payload=payload, **ctx.event(cmd, state.revision + 1)),)


@_decides(RemoveAlias)
def _remove_alias(cmd: RemoveAlias, ctx: _Context) -> Decision:
    state = _state(cmd, ctx)
    alias = cmd.payload.alias
    if alias not in state.aliases:
        holder = ctx.registry.aliases.get(alias)
        where = f"it names '{holder}'" if holder else "no model has it"
        return _reject(
            RejectionCode.ALIAS_INVALID,
            f"'{cmd.model_id}' has no alias '{alias}' ({where}).",
            "alias",
        )
    payload = AliasPayload(alias=alias)
    return (AliasRemoved(payload=payload, **ctx.event(cmd, state.revision + 1)),)


_UNDECIDED = set(COMMANDS.values()) - set(_RULES)
if _UNDECIDED:  # a command declared without its rule: fail at import, not at the first use
    raise TypeError(f"no rule decides {sorted(c.__name__ for c in _UNDECIDED)}")
