"""Promotion, rollback, aliases, merged metrics and shadow tests in the pure rules.

Scenarios walk ``decide`` and the fold by hand; a property test drives random commands of
every kind and checks the invariants after each event: an alias names exactly one model and
that model is active, the alias index agrees with the models, and following promotions from
any id ends (no cycle) on a model that is not forwarded further.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.errors import Rejection, RejectionCode
from registry.core.messages import (
    AliasPayload,
    AssignAlias,
    ChallengerPromoted,
    ChangeStatus,
    ChangeStatusPayload,
    CommandBase,
    EventBase,
    Evidence,
    PromoteChallenger,
    PromotePayload,
    PromotionRolledBack,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    RemoveAlias,
    RollbackPromotion,
    StartABTest,
    StartABTestPayload,
    StopABTest,
    UnregisterModel,
)
from registry.core.rules import decide
from registry.core.state import MAX_FORWARDS, RegistryState
from registry.core.types import Guardrails, Metrics, ModelConfig, Status

T0 = datetime(2026, 6, 1, tzinfo=UTC)
PROD = "lead-scoring@production"


class Log:
    """A registry folded from the events ``decide`` returns, with a clock."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.events: list[EventBase] = []
        self.now = T0

    def do(self, cmd: CommandBase) -> tuple[EventBase, ...] | Rejection:
        self.now += timedelta(seconds=1)
        decision = decide(cmd, self.state, now=self.now, allow_clear=True)
        if not isinstance(decision, Rejection):
            for event in decision:
                self.state.apply_event(event)
                self.events.append(event)
        return decision

    def ok(self, cmd: CommandBase) -> tuple[EventBase, ...]:
        decision = self.do(cmd)
        assert not isinstance(decision, Rejection), decision
        return decision

    def refused(self, cmd: CommandBase, code: RejectionCode) -> Rejection:
        decision = self.do(cmd)
        assert isinstance(decision, Rejection), decision
        assert decision.code is code, decision
        return decision


def _model(mid: str, status: Status = Status.ACTIVE, **extra: Any) -> RegisterModel:
    cfg = ModelConfig.model_validate(
        {
            "id": mid,
            "name": mid,
            "version": "1.0.0",
            "type": "classification",
            "provider": "custom",
            "providerConfig": {"provider": "custom", "callable": "lead_model"},
            "status": status,
            **extra,
        }
    )
    return RegisterModel(model_id=mid, payload=cfg)


def _ab(challenger: str, champion: str, pct: float = 20, **kw: Any) -> StartABTest:
    payload = StartABTestPayload(champion_model_id=champion, traffic_percentage=pct, **kw)
    return StartABTest(model_id=challenger, payload=payload)


def _alias(alias: str, mid: str) -> AssignAlias:
    return AssignAlias(model_id=mid, payload=AliasPayload(alias=alias))


def _pair(log: Log) -> None:
    log.ok(_model("v1"))
    log.ok(_model("v2"))
    log.ok(_alias(PROD, "v1"))
    log.ok(_ab("v2", "v1"))


def test_promote_is_one_event_that_moves_everything_addressed_to_the_champion() -> None:
    log = Log()
    _pair(log)
    evidence = Evidence(verdict="challenger better", figures={"requests": 900, "delta": 0.05})
    (event,) = log.ok(
        PromoteChallenger(model_id="v2", payload=PromotePayload(reason="won", evidence=evidence))
    )
    assert isinstance(event, ChallengerPromoted)
    assert event.payload.champion_model_id == "v1"
    assert event.payload.aliases == [PROD]
    assert event.payload.evidence == evidence
    v1, v2 = log.state.models["v1"], log.state.models["v2"]
    assert v1.status is Status.DEPRECATED
    assert v1.served_by == "v2"
    assert v2.status is Status.ACTIVE
    assert v2.ab_test is None
    assert v2.replaces == "v1"
    assert v1.aliases == ()
    assert v2.aliases == (PROD,)
    assert log.state.aliases == {PROD: "v2"}
    # requests keep their id or alias: both lead to v2
    assert log.state.resolve("v1") == (v2, None)
    assert log.state.resolve(PROD) == (v2, PROD)
    assert log.state.resolve("v2") == (v2, None)
    # the champion's revision counts its own events only; the challenger's moved by one
    assert v1.revision == 2
    assert v2.revision == 3


def test_rollback_restores_the_previous_champion_the_same_way() -> None:
    log = Log()
    _pair(log)
    log.ok(PromoteChallenger(model_id="v2"))
    (event,) = log.ok(RollbackPromotion(model_id="v2"))
    assert isinstance(event, PromotionRolledBack)
    assert event.payload.restored_model_id == "v1"
    assert event.payload.aliases == [PROD]
    v1, v2 = log.state.models["v1"], log.state.models["v2"]
    assert v1.status is Status.ACTIVE
    assert v1.served_by is None
    assert v1.aliases == (PROD,)
    assert v2.status is Status.DEPRECATED
    assert v2.served_by == "v1"
    assert v2.replaces is None
    assert log.state.resolve(PROD)[0] is v1
    assert log.state.resolve("v2")[0] is v1
    # nothing left to roll back, twice
    log.refused(RollbackPromotion(model_id="v1"), RejectionCode.NOTHING_TO_ROLL_BACK)
    log.refused(RollbackPromotion(model_id="v2"), RejectionCode.NOTHING_TO_ROLL_BACK)


def test_promote_needs_a_running_split_test_and_an_active_challenger() -> None:
    log = Log()
    log.ok(_model("v1"))
    log.ok(_model("v2"))
    log.refused(PromoteChallenger(model_id="v2"), RejectionCode.AB_TEST_NOT_RUNNING)
    log.ok(_model("v3", Status.TESTING))
    log.ok(_ab("v3", "v1", mode="shadow"))
    log.refused(PromoteChallenger(model_id="v3"), RejectionCode.INVALID_TRANSITION)
    log.refused(PromoteChallenger(model_id="nope"), RejectionCode.MODEL_NOT_FOUND)


def test_a_shadow_challenger_may_be_testing_a_split_one_may_not() -> None:
    log = Log()
    log.ok(_model("v1"))
    log.ok(_model("v2", Status.TESTING))
    log.refused(_ab("v2", "v1"), RejectionCode.AB_TEST_INVALID)
    guardrails = Guardrails(max_error_rate=5, min_samples=50)
    (event,) = log.ok(_ab("v2", "v1", pct=100, mode="shadow", guardrails=guardrails))
    test = log.state.models["v2"].ab_test
    assert test is not None
    assert test.shadow
    assert test.guardrails_wire() == guardrails.wire()
    # the same start again is a no-op; another mode is a conflict
    assert log.ok(_ab("v2", "v1", pct=100, mode="shadow", guardrails=guardrails)) == ()
    log.refused(_ab("v2", "v1", pct=100), RejectionCode.AB_TEST_CONFLICT)
    log.ok(StopABTest(model_id="v2"))
    assert log.state.models["v2"].ab_test is None


def test_an_alias_names_an_active_model_only() -> None:
    log = Log()
    log.ok(_model("v1"))
    log.ok(_model("t", Status.TESTING))
    log.refused(_alias(PROD, "t"), RejectionCode.ALIAS_INVALID)
    log.ok(_alias(PROD, "v1"))
    assert log.ok(_alias(PROD, "v1")) == ()  # already there: a no-op
    # deprecating (or releasing as testing) a model an alias names is refused
    log.refused(
        ChangeStatus(model_id="v1", payload=ChangeStatusPayload(status=Status.DEPRECATED)),
        RejectionCode.ALIAS_INVALID,
    )
    log.refused(
        ReleaseVersion(
            model_id="v1", payload=ReleaseVersionPayload(version="1.1.0", status=Status.TESTING)
        ),
        RejectionCode.ALIAS_INVALID,
    )
    log.refused(
        RemoveAlias(model_id="t", payload=AliasPayload(alias=PROD)), RejectionCode.ALIAS_INVALID
    )
    log.ok(RemoveAlias(model_id="v1", payload=AliasPayload(alias=PROD)))
    assert log.state.aliases == {}
    assert log.state.resolve(PROD) == (None, PROD)
    log.ok(ChangeStatus(model_id="v1", payload=ChangeStatusPayload(status=Status.DEPRECATED)))


def test_moving_an_alias_takes_it_from_its_holder() -> None:
    log = Log()
    log.ok(_model("a"))
    log.ok(_model("b"))
    log.ok(_alias(PROD, "a"))
    (event,) = log.ok(_alias(PROD, "b"))
    assert event.payload.previous_model_id == "a"  # type: ignore[attr-defined]
    assert log.state.models["a"].aliases == ()
    assert log.state.models["b"].aliases == (PROD,)
    assert log.state.models["a"].revision == 2  # its revision is its own events only


def test_alias_names_are_not_model_ids() -> None:
    with pytest.raises(ValueError, match="pattern"):
        AliasPayload(alias="no-at-sign")
    with pytest.raises(ValueError, match="pattern"):
        AliasPayload(alias="a@b@c")


def test_metrics_merge_unless_replaced_and_a_release_starts_without_them() -> None:
    log = Log()
    log.ok(_model("m", metrics={"accuracy": 91, "precision": 88, "recall": 80, "f1Score": 84}))
    (event,) = log.ok(
        RecordMetrics(model_id="m", payload=RecordMetricsPayload(metrics=Metrics(mae=0.3)))
    )
    assert log.state.models["m"].metrics == {
        "accuracy": 91,
        "precision": 88,
        "recall": 80,
        "f1Score": 84,
        "mae": 0.3,
    }
    # the event holds the whole resulting set: a reader needs no earlier event to show it
    assert event.payload.metrics.wire() == log.state.models["m"].metrics  # type: ignore[attr-defined]
    # the same again changes nothing: no event
    assert (
        log.ok(RecordMetrics(model_id="m", payload=RecordMetricsPayload(metrics=Metrics(mae=0.3))))
        == ()
    )
    log.ok(
        RecordMetrics(
            model_id="m", payload=RecordMetricsPayload(metrics=Metrics(mse=1.5), replace=True)
        )
    )
    assert log.state.models["m"].metrics == {"mse": 1.5}
    log.ok(ReleaseVersion(model_id="m", payload=ReleaseVersionPayload(version="1.1.0")))
    assert log.state.models["m"].metrics is None
    log.ok(
        ReleaseVersion(
            model_id="m",
            payload=ReleaseVersionPayload(version="1.2.0", metrics=Metrics(accuracy=93)),
        )
    )
    assert log.state.models["m"].metrics == {"accuracy": 93}


def test_an_old_release_event_without_the_flag_still_carries_metrics_over() -> None:
    """Events written before ``resetsMetrics`` existed fold as they did (replay is stable)."""
    log = Log()
    log.ok(_model("m", metrics={"accuracy": 91}))
    (release,) = log.ok(
        ReleaseVersion(model_id="m", payload=ReleaseVersionPayload(version="1.1.0"))
    )
    old = release.model_copy(
        update={"payload": release.payload.model_copy(update={"resets_metrics": None})}  # type: ignore[attr-defined]
    )
    state = RegistryState()
    state.apply_event(log.events[0])
    state.apply_event(old)
    assert state.models["m"].metrics == {"accuracy": 91}


# --------------------------------------------------------------------------- properties

IDS = ["a", "b", "c", "d"]
ALIASES = ["x@prod", "x@canary"]
ids = st.sampled_from(IDS)
aliases = st.sampled_from(ALIASES)
commands = st.one_of(
    st.builds(lambda m: _model(m), ids),
    st.builds(lambda m: _model(m, Status.TESTING), ids),
    st.builds(lambda a, b, p: _ab(a, b, p), ids, ids, st.sampled_from([0, 20, 100])),
    st.builds(lambda a, b: _ab(a, b, 50, mode="shadow"), ids, ids),
    st.builds(lambda m: StopABTest(model_id=m), ids),
    st.builds(lambda m: PromoteChallenger(model_id=m), ids),
    st.builds(lambda m: RollbackPromotion(model_id=m), ids),
    st.builds(_alias, aliases, ids),
    st.builds(lambda a, m: RemoveAlias(model_id=m, payload=AliasPayload(alias=a)), aliases, ids),
    st.builds(
        lambda m, s: ChangeStatus(model_id=m, payload=ChangeStatusPayload(status=s)),
        ids,
        st.sampled_from([Status.ACTIVE, Status.DEPRECATED, Status.TESTING]),
    ),
    st.builds(lambda m: UnregisterModel(model_id=m), ids),
)


def _check_invariants(state: RegistryState) -> None:
    held = {a: mid for mid, s in state.models.items() for a in s.aliases}
    assert held == state.aliases  # the index agrees with the models
    for alias, mid in held.items():
        model = state.models[mid]
        assert model.status is Status.ACTIVE, (alias, model)
    for mid in state.models:
        seen = {mid}
        current = state.models[mid]
        while current.served_by is not None:
            assert current.served_by not in seen, f"a promotion cycle through {mid}"
            seen.add(current.served_by)
            nxt = state.models.get(current.served_by)
            if nxt is None or not nxt.live:
                break
            current = nxt
        assert len(seen) <= MAX_FORWARDS + 1
        resolved, _ = state.resolve(mid)
        assert resolved is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, min_size=1, max_size=40))
def test_aliases_and_promotions_keep_their_invariants(cmds: list[CommandBase]) -> None:
    log = Log()
    for cmd in cmds:
        log.do(cmd)
        _check_invariants(log.state)
    # the fold of the events alone gives the same state (the decider's view is the readers')
    replayed = RegistryState()
    for event in log.events:
        replayed.apply_event(event)
    assert replayed.models == log.state.models
    assert replayed.aliases == log.state.aliases
