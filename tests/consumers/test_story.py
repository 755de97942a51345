"""The champion/challenger story end to end, on a live stack (issue 15's "done when").

One in-process stack (decider, projector, prediction consumer, monitor and the guard) on
the test broker. lead-scoring-v1 (the ``score`` rule) serves ``lead-scoring@production``.
lead-scoring-v2 is registered as testing, activated and A/B tested at 20% under a guardrail;
its first build is broken, and the guard (the actor ``monitor``, with its own key) sets its
traffic to 0. A fixed build (2.0.1, the ``score_v2`` rule, which matches the ground truth)
is shadowed, then A/B tested until the sequential verdict says better; it is promoted with
the CLI, requests to the alias and to the old id are served by v2 with provenance, it is
rolled back, and ``audit show`` tells the story in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from consumers.monitor.report import build_report
from consumers.monitor.service import monitor_path
from model_registry.cli.main import main
from model_registry.client import ModelRegistry
from model_registry.stack import Stack
from registry.core.predictions import PredictionOutcome, PredictionRequest, PredictionResult
from registry.core.types import ModelConfig
from registry.infra.settings import MonitorSettings, PredictorSettings, Settings
from tests.consumers.monitor.streams import produce
from tests.helpers import eventually, read_topic

V1, V2, PROD = "lead-scoring-v1", "lead-scoring-v2", "lead-scoring@production"
RULES = "tests.consumers.custom_models"


def _config(model_id: str, version: str, rule: str, status: str) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "name": "Lead scoring",
            "version": version,
            "type": "classification",
            "provider": "custom",
            "status": status,
            "providerConfig": {"provider": "custom", "callable": f"{RULES}:{rule}"},
        }
    )


def _lead(i: int) -> dict[str, int]:
    return {"visits": i % 10, "emails_opened": (i // 10) % 5}


def _truth(i: int) -> int:
    return int(_lead(i)["visits"] >= 3)


@contextlib.asynccontextmanager
async def _stack(settings: Settings) -> AsyncIterator[Stack]:
    stack = Stack(settings, components=("decider", "projector", "predictor", "monitor", "guard"))
    await stack.start()
    try:
        assert await stack.wait_ready(60) == []
        yield stack
    finally:
        await stack.stop()


async def _ask(
    settings: Settings, prefix: str, model: str, n: int, *, outcomes: bool = False
) -> None:
    """``n`` requests for ``model`` (units lead-0..), and their ground truth when asked."""
    requests = [
        PredictionRequest(id=f"{prefix}-{i}", model_id=model, unit_id=f"lead-{i}", input=_lead(i))
        for i in range(n)
    ]
    await produce(
        settings,
        "predictions.requests",
        ((r.unit_id.encode(), r.model_dump_json().encode()) for r in requests if r.unit_id),
    )
    if outcomes:
        await produce(
            settings,
            "predictions.outcomes",
            (
                (
                    f"{prefix}-{i}".encode(),
                    PredictionOutcome(request_id=f"{prefix}-{i}", actual=_truth(i))
                    .model_dump_json()
                    .encode(),
                )
                for i in range(n)
            ),
        )


async def _results(settings: Settings, prefix: str, n: int) -> list[PredictionResult]:
    found: dict[str, PredictionResult] = {}

    async def all_answered() -> bool:
        for record in await read_topic(settings, "predictions.results"):
            result = PredictionResult.model_validate_json(record.value)
            if result.request_id.startswith(f"{prefix}-"):
                found[result.request_id] = result
        return len(found) == n

    await eventually(all_answered, timeout=60, interval=0.2, what=f"{n} results of {prefix}")
    return list(found.values())


def _cli(settings: Settings, *args: str) -> Result:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


async def _run_cli(settings: Settings, *args: str) -> Result:
    result = await asyncio.to_thread(_cli, settings, *args)
    assert result.exit_code == 0, result.output
    return result


async def _model(reg: ModelRegistry, model_id: str) -> Any:
    view = await reg.get_model(model_id)
    assert view is not None
    return view


@pytest.mark.timeout(600)
async def test_the_whole_champion_challenger_story(settings: Settings) -> None:
    settings = settings.with_(
        predictor=PredictorSettings(
            assignment="all", provider_retries=0, provider_backoff_s=0.001, cache_ttl_s=0
        ),
        monitor=MonitorSettings(guard_interval_s=0.3),
    )
    async with _stack(settings), ModelRegistry(settings) as reg:
        await reg.register(_config(V1, "1.0.0", "score", "active"))
        await reg.assign_alias(PROD, V1)
        await reg.register(_config(V2, "2.0.0", "broken", "testing"))
        await reg.update_status(V2, "active")
        await reg.start_ab_test(
            V2, V1, 20, guardrails={"maxErrorRate": 5, "minSamples": 20, "action": "zero_traffic"}
        )

        # 1. the broken build fails every request it gets: the guard sets its traffic to 0
        await _ask(settings, "broken", PROD, 300, outcomes=True)
        answered = await _results(settings, "broken", 300)
        assert all(r.error is None for r in answered)  # callers got the champion's answer
        assert any(r.fallback == "champion" for r in answered)

        async def throttled() -> bool:
            view = await reg.get_model(V2)
            return view is not None and view.traffic_percentage == 0

        await eventually(throttled, timeout=60, interval=0.2, what="the guard's traffic change")
        history = await reg.status_history(V2)
        assert [h.to_status.value for h in history] == ["testing", "active"]

        # 2. the fixed build is shadowed: callers keep the champion's answers
        await reg.stop_ab_test(V2, reason="broken build replaced")
        await reg.release_version(
            V2,
            "2.0.1",
            status="testing",
            providerConfig={"provider": "custom", "callable": f"{RULES}:score_v2"},
        )
        await reg.start_ab_test(V2, V1, 50, mode="shadow")
        await _ask(settings, "shadow", PROD, 200)
        shadowed = await _results(settings, "shadow", 200)
        assert {(r.served_model_id, r.variant) for r in shadowed} == {(V1, "champion")}

        async def mirrored() -> bool:
            records = await read_topic(settings, "predictions.shadow")
            return len(records) >= 50

        await eventually(mirrored, timeout=60, interval=0.2, what="shadow answers")
        for record in await read_topic(settings, "predictions.shadow"):
            copy = PredictionResult.model_validate_json(record.value)
            assert (copy.variant, copy.served_model_id, copy.served_version) == (
                "shadow",
                V2,
                "2.0.1",
            )
        await reg.stop_ab_test(V2, reason="shadow looked right")

        # 3. A/B test the fixed build until the sequential verdict says better
        await reg.update_status(V2, "active")
        await reg.start_ab_test(V2, V1, 20)
        report = None
        for round_ in range(8):
            await _ask(settings, f"ab{round_}", PROD, 500, outcomes=True)
            await _results(settings, f"ab{round_}", 500)
            await asyncio.sleep(1.0)  # the monitor joins the outcomes
            report = build_report(monitor_path(settings), V2)
            if report.verdict == "challenger better":
                break
        assert report is not None
        assert report.verdict == "challenger better", report.reasons
        assert report.quality is not None
        assert report.quality.sequential is not None
        assert report.quality.sequential.low > 0  # valid under every look we took

        # 4. promote with the CLI: one event, with the report as evidence
        await _run_cli(settings, "ab", "promote", V2, "--reason", "better on accuracy")
        await _ask(settings, "after", PROD, 20)
        await _ask(settings, "old-id", V1, 20)
        for r in await _results(settings, "after", 20) + await _results(settings, "old-id", 20):
            assert (r.served_model_id, r.served_version, r.resolved_model_id) == (
                V2,
                "2.0.1",
                V2,
            )
            assert r.variant == "none"
            assert r.error is None
        assert {r.alias for r in await _results(settings, "after", 20)} == {PROD}
        v1 = await _model(reg, V1)
        assert (v1.status.value, v1.served_by) == ("deprecated", V2)
        assert (await _model(reg, PROD)).model_id == V2  # get_model takes an alias

        # 5. roll back: v1 serves the alias and both ids again
        await _run_cli(settings, "ab", "rollback", V2, "--reason", "a CRM team complained")
        await _ask(settings, "rb", PROD, 10)
        await _ask(settings, "rbv2", V2, 10)
        for r in await _results(settings, "rb", 10) + await _results(settings, "rbv2", 10):
            assert (r.served_model_id, r.served_version) == (V1, "1.0.0")

        # 6. the audit tells the story, in order (newest first), with who did each step
        show = (await _run_cli(settings, "audit", "show", V2)).output
        steps = [
            "rolled back to lead-scoring-v1 1.0.0 (aliases lead-scoring@production)",
            "promoted 2.0.1 over lead-scoring-v1 1.0.0 (aliases lead-scoring@production); "
            "evidence: challenger better",
            "20.0% of lead-scoring-v1",
            "testing -> active",
            "stopped: shadow looked right",
            "shadow ab:lead-scoring-v2:",
            "released 2.0.1 (was 2.0.0) as testing",
            "stopped: broken build replaced",
            "20.0% -> 0.0%: guardrail max_error_rate",
            "20.0% of lead-scoring-v1 (guardrails)",
            "testing -> active",
            "registered 2.0.0",
        ]
        at = 0
        for step in steps:  # each after the one before: the story's order, newest first
            assert step in show[at:], f"{step!r} missing after position {at}:\n{show}"
            at = show.index(step, at) + len(step)
        assert "Actor:    monitor" in show

    events = [orjson.loads(r.value) for r in await read_topic(settings, "registry.events")]
    promoted = [e for e in events if e["type"] == "ChallengerPromoted"]
    assert len(promoted) == 1
    evidence = promoted[0]["payload"]["evidence"]
    assert evidence["verdict"] == "challenger better"
    assert evidence["figures"]["challenger_requests"] > 0


@pytest.mark.timeout(300)
async def test_the_guard_promotes_a_challenger_that_is_better_once_it_is_sure(
    settings: Settings,
) -> None:
    """The other direction: ``promoteWhenBetter`` on a healthy, better challenger. The guard
    never throttles it, and promotes it (as ``monitor``, with the evidence) once the
    sequential interval of accuracy shows it better after ``minSamples``."""
    settings = settings.with_(
        predictor=PredictorSettings(assignment="all", cache_ttl_s=0),
        monitor=MonitorSettings(guard_interval_s=0.3),
    )
    async with _stack(settings), ModelRegistry(settings) as reg:
        await reg.register(_config(V1, "1.0.0", "score", "active"))
        await reg.assign_alias(PROD, V1)
        await reg.register(_config(V2, "2.0.0", "score_v2", "active"))
        await reg.start_ab_test(
            V2,
            V1,
            30,
            guardrails={"maxErrorRate": 5, "minSamples": 50, "promoteWhenBetter": True},
        )

        async def promoted() -> bool:
            view = await reg.get_model(V1)
            return view is not None and view.served_by == V2

        for round_ in range(10):
            await _ask(settings, f"p{round_}", PROD, 400, outcomes=True)
            await _results(settings, f"p{round_}", 400)
            with contextlib.suppress(AssertionError):
                await eventually(promoted, timeout=3, interval=0.2)
                break
        assert await promoted(), "the guard did not promote a clearly better challenger"
        v2 = await _model(reg, V2)
        assert v2.aliases == (PROD,)
        assert v2.traffic_percentage is None  # the test ended with the promotion

    events = [orjson.loads(r.value) for r in await read_topic(settings, "registry.events")]
    assert not [e for e in events if e["type"] == "ABTestTrafficChanged"]  # never throttled
    (promotion,) = [e for e in events if e["type"] == "ChallengerPromoted"]
    assert promotion["actor"] == "monitor"
    assert promotion["signed_by"] == "monitor"
    assert promotion["payload"]["reason"].startswith("guardrail promote_when_better")
    assert promotion["payload"]["evidence"]["verdict"] == "challenger better"
