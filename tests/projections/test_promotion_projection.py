"""Promotions and aliases in the projection: rows, the alias view, and point-in-time reads of
a model another model's event changed."""

from __future__ import annotations

from datetime import timedelta

from projections import ProjectionReader, Projector
from projections.schema import projection_path
from registry.core.messages import (
    AliasPayload,
    AssignAlias,
    PromoteChallenger,
    RollbackPromotion,
    StartABTest,
    StartABTestPayload,
)
from registry.core.types import Status
from registry.infra.settings import Settings
from tests.projections.workload import T0, History, produce, register

PROD = "lead@production"


async def test_promotion_rows_aliases_and_the_past(settings: Settings) -> None:
    h = History()
    h.do(register("v1", status=Status.ACTIVE))  # T0+1s
    h.do(register("v2", status=Status.ACTIVE))  # +2s
    h.do(AssignAlias(model_id="v1", payload=AliasPayload(alias=PROD), actor="ops"))  # +3s
    h.do(
        StartABTest(
            model_id="v2",
            payload=StartABTestPayload(champion_model_id="v1", traffic_percentage=20),
            actor="ops",
        )
    )  # +4s
    h.do(PromoteChallenger(model_id="v2", actor="ops"))  # +5s
    await produce(settings, h.events)
    db = projection_path(settings)
    await Projector(settings, db).catch_up()
    async with ProjectionReader(db) as reader:
        v1, v2 = await reader.get_model("v1"), await reader.get_model("v2")
        assert v1 is not None
        assert v2 is not None
        assert (v1.status, v1.served_by, v1.aliases) == (Status.DEPRECATED, "v2", ())
        assert (v2.status, v2.replaces, v2.aliases) == (Status.ACTIVE, "v1", (PROD,))
        assert v2.ab_test_id is None
        assert await reader.list_aliases() == [(PROD, "v2", "1.0.0", "active")]
        named = await reader.get_model(PROD)
        assert named is not None
        assert named.model_id == "v2"
        # the past: before the promotion v1 was active and held the alias
        before = T0 + timedelta(seconds=4, milliseconds=500)
        past = await reader.get_model("v1", as_of=before)
        assert past is not None
        assert (past.status, past.served_by, past.aliases) == (Status.ACTIVE, None, (PROD,))
        then = await reader.get_model(PROD, as_of=before)
        assert then is not None
        assert then.model_id == "v1"
        (test,) = await reader.list_ab_tests()
        assert test.status == "promoted"

    h.do(RollbackPromotion(model_id="v2", actor="ops"))  # +6s
    await produce(settings, h.events[-1:])
    await Projector(settings, db).catch_up()
    async with ProjectionReader(db) as reader:
        v1 = await reader.get_model("v1")
        assert v1 is not None
        assert (v1.status, v1.served_by, v1.aliases) == (Status.ACTIVE, None, (PROD,))
        history = [
            (c.from_status, c.to_status, c.event_type) for c in await reader.status_history("v1")
        ]
        assert history[-2:] == [
            (Status.ACTIVE, Status.DEPRECATED, "ChallengerPromoted"),
            (Status.DEPRECATED, Status.ACTIVE, "PromotionRolledBack"),
        ]
    # a rebuild from the log gives the same rows (the reloaded fold keeps aliases and links)
    rebuilt = settings.data_dir / "rebuilt.db"
    await Projector(settings, rebuilt, bulk=True).catch_up()
    async with ProjectionReader(rebuilt) as reader:
        again = await reader.get_model("v1")
        assert again is not None
        assert again.aliases == (PROD,)
