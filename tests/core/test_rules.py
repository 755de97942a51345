"""Property-based tests of the pure rules: ``decide`` and ``evolve``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.errors import Rejection
from registry.core.messages import (
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    CommandBase,
    ConfigChanges,
    EventBase,
    ModelRegistered,
    ModelStatusChanged,
    ReasonPayload,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    ReleaseVersion,
    ReleaseVersionPayload,
    StartABTest,
    StartABTestPayload,
    StopABTest,
    UnregisterModel,
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.rules import INITIAL_STATUSES, LEGAL_TRANSITIONS, decide
from registry.core.state import RegistryState
from registry.core.types import Metrics, ModelConfig, ModelType, Status

IDS = ["a", "b", "c"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ids = st.sampled_from(IDS)
statuses = st.sampled_from(list(Status))
versions = st.builds(lambda mi, pa: f"1.{mi}.{pa}", st.integers(0, 3), st.integers(0, 3)) | st.just(
    "2.0.0"
)
types = st.sampled_from([ModelType.CLASSIFICATION, ModelType.REGRESSION])
revisions = st.none() | st.integers(0, 6)


def _register(
    mid: str, status: Status, version: str, mtype: ModelType, rev: int | None
) -> CommandBase:
    cfg = ModelConfig(
        id=mid, name=mid, version=version, type=mtype, provider="custom", status=status
    )
    return RegisterModel(model_id=mid, payload=cfg, expected_revision=rev)


commands = st.one_of(
    st.builds(
        _register,
        ids,
        st.sampled_from(sorted(INITIAL_STATUSES) + [Status.DEPRECATED]),
        versions,
        types,
        revisions,
    ),
    st.builds(
        lambda m, s, r: ChangeStatus(
            model_id=m, payload=ChangeStatusPayload(status=s), expected_revision=r
        ),
        ids,
        statuses,
        revisions,
    ),
    st.builds(
        lambda m, s: ChangeStatus(model_id=m, payload=ChangeStatusPayload(status=s)), ids, statuses
    ),
    st.builds(
        lambda m, v, s: ReleaseVersion(
            model_id=m, payload=ReleaseVersionPayload(version=v, status=s)
        ),
        ids,
        versions,
        st.none() | statuses,
    ),
    st.builds(
        lambda m, a: RecordMetrics(
            model_id=m, payload=RecordMetricsPayload(metrics=Metrics(accuracy=a))
        ),
        ids,
        st.floats(0, 100),
    ),
    st.builds(
        lambda m, d: UpdateConfig(
            model_id=m, payload=UpdateConfigPayload(changes=ConfigChanges(description=d))
        ),
        ids,
        st.sampled_from(["x", "y"]),
    ),
    st.builds(
        lambda m, c, p: StartABTest(
            model_id=m, payload=StartABTestPayload(champion_model_id=c, traffic_percentage=p)
        ),
        ids,
        ids,
        st.sampled_from([0, 20, 50, 100]),
    ),
    st.builds(
        lambda m, p: ChangeABTraffic(
            model_id=m, payload=ChangeABTrafficPayload(traffic_percentage=p)
        ),
        ids,
        st.sampled_from([10, 20, 90]),
    ),
    st.builds(lambda m: StopABTest(model_id=m, payload=ReasonPayload()), ids),
    st.builds(lambda m: UnregisterModel(model_id=m, payload=ReasonPayload()), ids),
)


def _run(cmds: list[CommandBase]) -> tuple[RegistryState, list[EventBase], list[RegistryState]]:
    state = RegistryState()
    log: list[EventBase] = []
    for i, cmd in enumerate(cmds):
        decision = decide(cmd, state, now=T0 + timedelta(seconds=i))
        if isinstance(decision, Rejection):
            assert decision.code
            assert decision.message
            continue
        for event in decision:
            state.apply_event(event)
            log.append(event)
    return state, log, []


def _check_invariants(state: RegistryState) -> None:
    for mid, model in state.models.items():
        ab = model.ab_test
        if ab is None:
            continue
        champion = state.models[ab.champion_model_id]
        assert model.status is Status.ACTIVE
        assert champion.status is Status.ACTIVE
        assert champion.config.type == model.config.type
        assert ab.champion_model_id != mid
        assert champion.ab_test is None  # a champion is not itself a challenger
    champions = [m.ab_test.champion_model_id for m in state.models.values() if m.ab_test]
    assert len(champions) == len(set(champions))  # one challenger per champion


@settings(max_examples=600, deadline=None)
@given(st.lists(commands, max_size=40))
def test_no_sequence_reaches_an_illegal_state_or_skips_a_revision(cmds: list[CommandBase]) -> None:
    state = RegistryState()
    revisions: dict[str, int] = {}
    for i, cmd in enumerate(cmds):
        before = state.models.get(cmd.model_id)
        decision = decide(cmd, state, now=T0 + timedelta(seconds=i))
        if isinstance(decision, Rejection):
            continue
        for event in decision:
            assert event.revision == revisions.get(event.model_id, 0) + 1
            revisions[event.model_id] = event.revision
            if isinstance(event, ModelStatusChanged):
                assert (event.payload.from_status, event.payload.to_status) in LEGAL_TRANSITIONS
            if isinstance(event, ModelRegistered):
                assert event.payload.status in INITIAL_STATUSES
                assert before is None or not before.live
            state.apply_event(event)
        _check_invariants(state)


@settings(max_examples=600, deadline=None)
@given(st.lists(commands, max_size=40))
def test_folding_the_log_gives_the_state_decide_saw(cmds: list[CommandBase]) -> None:
    state, log, _ = _run(cmds)
    folded = RegistryState()
    for event in log:
        folded.apply_event(event)
    assert folded.models == state.models
    # and every revision is gap-free per model in the log
    seen: dict[str, int] = {}
    for event in log:
        assert event.revision == seen.get(event.model_id, 0) + 1
        seen[event.model_id] = event.revision


@settings(max_examples=500, deadline=None)
@given(st.lists(commands, max_size=25), commands)
def test_decide_is_deterministic(cmds: list[CommandBase], last: CommandBase) -> None:
    state, _, _ = _run(cmds)
    assert decide(last, state, now=T0) == decide(last, state, now=T0)


@settings(max_examples=500, deadline=None)
@given(st.lists(commands, max_size=25), st.sampled_from(IDS), st.integers(0, 8))
def test_expected_revision_mismatch_is_a_version_conflict(
    cmds: list[CommandBase], mid: str, expected: int
) -> None:
    state, _, _ = _run(cmds)
    current = state.revision_of(mid)
    cmd = RecordMetrics(
        model_id=mid,
        payload=RecordMetricsPayload(metrics=Metrics(mae=1)),
        expected_revision=expected,
    )
    decision = decide(cmd, state, now=T0)
    if expected != current:
        assert isinstance(decision, Rejection)
        assert decision.code == "VersionConflict"
        assert str(current) in decision.message


def _with_provider_config(provider: str, **settings_: object) -> RegisterModel:
    payload = ModelConfig.model_validate(
        {
            "id": "m",
            "name": "M",
            "version": "1.0.0",
            "type": "classification",
            "provider": provider,
            "providerConfig": {"provider": provider, **settings_},
        }
    )
    return RegisterModel(model_id="m", payload=payload)


def test_what_the_decider_can_tell_of_a_provider_config_by_its_shape() -> None:
    digest = "ab" * 32
    cases = {
        ("scikit-learn", "modelPath"): ({"modelPath": "/models/m.skops"}, "modelSha256"),
        ("scikit-learn", "bad digest"): (
            {"modelPath": "/models/m.skops", "modelSha256": "ABC"},
            "modelSha256",
        ),
        ("custom", "shell"): ({"callable": "os.system; id"}, "callable"),
        ("custom", "space"): ({"callable": "a b:c"}, "callable"),
    }
    for (provider, _), (config, field) in cases.items():
        decision = decide(_with_provider_config(provider, **config), RegistryState(), now=T0)
        assert isinstance(decision, Rejection), (provider, config)
        assert decision.field == f"providerConfig.{field}"
    for provider, config in (
        ("scikit-learn", {"modelPath": "/models/m.skops", "modelSha256": digest}),
        ("custom", {"callable": "crm.rules:score"}),
        ("custom", {"callable": "lead-rules"}),  # an entry point's name
    ):
        decision = decide(_with_provider_config(provider, **config), RegistryState(), now=T0)
        assert not isinstance(decision, Rejection), (provider, config, decision)
