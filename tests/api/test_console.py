"""The web console against a real stack: a decider, a projector and a monitor on a real broker.

The app is the service's own (``create_app``, which mounts the console under ``/console``),
given a small ``ApiServices`` of real parts: the projection the projector keeps, the
monitor's database, command clients that sign with the test identity in the principal's
name, and two fixed tokens (the token store is the API's business, tested with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx
from fastapi import FastAPI

from consumers.monitor.report import build_report
from consumers.monitor.service import Monitor
from model_registry.api import console
from model_registry.api.app import create_app
from model_registry.api.services import Principal
from projections import ProjectionReader, Projector
from projections.errors import ProjectionUnavailable
from projections.schema import projection_path
from registry.decider.client import CommandClient
from registry.infra.settings import MonitorSettings, Settings
from tests.consumers.monitor.streams import (
    CHALLENGER,
    CHAMPION,
    T0,
    outcome,
    produce_outcomes,
    produce_results,
    result,
)
from tests.helpers import eventually, running_decider

DEPLOYER_TOKEN = "tok-deployer-0123456789"
VIEWER_TOKEN = "tok-viewer-0123456789"
BASE = "http://console.test"


class Services:
    """``ApiServices`` over real parts (what ``model_registry/api/app.py`` provides live)."""

    def __init__(self, settings: Settings, monitor_path: Path, *, anonymous: bool) -> None:
        self.settings = settings
        self.projection_path = projection_path(settings)
        self.monitor_path = monitor_path
        self.anonymous = anonymous
        self.tokens = {
            DEPLOYER_TOKEN: Principal("deployer-bob", frozenset({"deployer"}), "t1"),
            VIEWER_TOKEN: Principal("viewer-vic", frozenset({"author"}), "t2"),
        }
        self._reader = ProjectionReader(self.projection_path)
        self._clients: dict[str, CommandClient] = {}

    async def reader(self, principal: Principal | None = None) -> ProjectionReader:
        client = self._clients.get(principal.actor or "") if principal else None
        if client is not None:
            for partition, offset in client.written.items():
                await self._reader.wait_for_offset(partition, offset, timeout=20)
        return self._reader

    def authenticate(self, token: str | None) -> Principal | None:
        if token is None:
            return Principal(None, frozenset()) if self.anonymous else None
        return self.tokens.get(token)

    async def client(self, principal: Principal) -> CommandClient:
        if principal.actor is None:
            raise PermissionError("anonymous")
        if principal.actor not in self._clients:
            c = CommandClient(self.settings, actor=principal.actor, timeout=20)
            await c.start()
            self._clients[principal.actor] = c
        return self._clients[principal.actor]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        await self._reader.close()


@dataclass
class World:
    services: Services
    app: FastAPI
    test_id: str


def _config(model_id: str, status: str = "active") -> dict[str, object]:
    return {
        "id": model_id,
        "name": f"Lead scoring {model_id[-2:]}",
        "version": "1.0.0",
        "type": "classification",
        "provider": "scikit-learn",
        "description": "scores leads <b>fast</b>",
        "status": status,
        "credentials": {"apiKey": "env:LEAD_SCORING_KEY"},
        "parameters": {"threshold": 0.5},
    }


@contextlib.asynccontextmanager
async def _world(settings: Settings, tmp_path: Path, *, anonymous: bool) -> AsyncIterator[World]:
    """Two active models in a 20% test, another in training, the monitor's figures."""
    monitor_db = tmp_path / "monitor.db"
    async with running_decider(settings):
        stop = asyncio.Event()
        projector = Projector(settings, projection_path(settings))
        task = asyncio.create_task(projector.run(stop))
        services = Services(settings, monitor_db, anonymous=anonymous)
        try:
            async with CommandClient(settings, actor="ops") as ops:
                await ops.register(_config(CHAMPION))
                await ops.register(_config(CHALLENGER))
                await ops.register(
                    {**_config("churn-v1", "training"), "type": "regression", "credentials": None}
                )
                await ops.assign_alias("lead-scoring@production", CHAMPION)
                await ops.start_ab_test(
                    CHALLENGER, CHAMPION, 20, guardrails={"maxErrorRate": 60, "minSamples": 50}
                )
            reader = await services.reader()

            async def projected() -> str:
                return await _test_id(reader) or ""

            test_id: str = await eventually(projected, 20, what="the test projected")
            # 500 requests, 1 in 5 to the challenger; 10% vs 4% errors; outcomes for all
            results, outcomes = [], []
            for i in range(500):
                variant = "challenger" if i % 5 == 0 else "champion"
                failed = i % 50 == 0 or (variant == "champion" and i % 25 == 1)
                results.append(
                    result(
                        f"r{i}",
                        variant,
                        test_id,
                        error="ProviderTimeout" if failed else None,
                        output=None if failed else {"label": i % 3 == 0, "score": 0.5},
                        latency_ms=20.0 + i % 7,
                        at=T0 + timedelta(seconds=i),
                    )
                )
                outcomes.append(outcome(f"r{i}", i % 3 == 0 or i % 11 == 0))
            await produce_results(settings, results)
            await produce_outcomes(settings, outcomes)
            monitor = Monitor(settings, monitor_db, MonitorSettings(max_records=2000))
            try:
                await monitor.catch_up()
            finally:
                await monitor.close()
            app = create_app(settings, services=services)  # mounts the console under /console
            yield World(services, app, test_id)
        finally:
            await services.close()
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


async def _test_id(reader: ProjectionReader) -> str | None:
    with contextlib.suppress(ProjectionUnavailable):
        view = await reader.get_model(CHALLENGER)
        if view is not None and view.ab_test_id:
            return str(view.ab_test_id)
    return None


def _browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return unescape(match.group(1))


def _testid(html: str, testid: str) -> tuple[str, str]:
    """(data-value, text) of the first element with ``data-testid=testid``."""
    match = re.search(
        rf'data-testid="{re.escape(testid)}"(?: data-value="([^"]*)")?[^>]*>([^<]*)<', html
    )
    assert match, f"no data-testid={testid}"
    return unescape(match.group(1) or ""), unescape(match.group(2)).strip()


async def _login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/console/login")
    assert form.status_code == 200
    return await client.post(
        "/console/login",
        data={"token": token, "csrf": _hidden(form.text, "csrf"), "next": "/console/"},
    )


async def test_login_pages_figures_and_a_traffic_change(settings: Settings, tmp_path: Path) -> None:
    async with _world(settings, tmp_path, anonymous=False) as world, _browser(world.app) as web:
        # no session: every page sends to the login form
        r = await web.get("/console/")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/console/login")
        # a bad token is refused, and no cookie is set
        bad = await _login(web, "not-a-token")
        assert bad.status_code == 401
        assert "not accepted" in bad.text
        assert console.SESSION_COOKIE not in web.cookies
        # a login form posted without its CSRF value is refused
        r = await web.post("/console/login", data={"token": DEPLOYER_TOKEN, "csrf": "x"})
        assert r.status_code == 403
        ok = await _login(web, DEPLOYER_TOKEN)
        assert ok.status_code == 303
        assert ok.headers["location"] == "/console/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http here

        # the model list: every live model, badges, revision, aliases, A/B state
        page = await web.get("/console/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == console.CSP
        assert "'unsafe-inline'" not in console.CSP
        html = page.text
        for mid in (CHAMPION, CHALLENGER, "churn-v1"):
            assert f'data-model-id="{mid}"' in html
        assert 'class="badge badge-active"' in html
        assert 'class="badge badge-training"' in html
        assert "lead-scoring@production" in html
        assert 'data-role="challenger"' in html
        assert 'data-role="champion"' in html
        assert DEPLOYER_TOKEN not in html
        assert _testid(html, "model-count")[0] == "3"

        # filters: status, type, text search
        r = await web.get("/console/", params={"status": "training"})
        assert 'data-model-id="churn-v1"' in r.text
        assert f'data-model-id="{CHAMPION}"' not in r.text
        r = await web.get("/console/", params={"type": "regression"})
        assert _testid(r.text, "model-count")[0] == "1"
        r = await web.get("/console/", params={"q": "SCORING-V2"})
        assert f'data-model-id="{CHALLENGER}"' in r.text
        assert f'data-model-id="{CHAMPION}"' not in r.text
        r = await web.get("/console/", params={"status": "bogus"})  # unknown: ignored
        assert _testid(r.text, "model-count")[0] == "3"

        # the model page: what the projection holds, secrets as reference names only
        reader = await world.services.reader()
        v2 = await reader.get_model(CHALLENGER)
        assert v2 is not None
        page = await web.get(f"/console/models/{CHALLENGER}")
        assert page.status_code == 200
        html = page.text
        assert _testid(html, "revision") == (str(v2.revision), str(v2.revision))
        assert _testid(html, "status")[0] == "active"
        assert "env:LEAD_SCORING_KEY" in html
        assert "scores leads &lt;b&gt;fast&lt;/b&gt;" in html  # autoescaped
        assert world.test_id in html
        assert 'data-testid="status-change"' in html
        r = await web.get("/console/models/lead-scoring@production")
        assert _testid(r.text, "model-id")[1] == CHAMPION
        assert (await web.get("/console/models/nope")).status_code == 404

        # the A/B test page: the report's figures, the verdict, the forms for a deployer
        report = build_report(world.services.monitor_path, world.test_id)
        page = await web.get(f"/console/ab-tests/{world.test_id}")
        assert page.status_code == 200
        html = page.text
        assert _testid(html, "requests-champion") == (
            str(report.champion.requests),
            str(report.champion.requests),
        )
        assert _testid(html, "requests-challenger")[0] == str(report.challenger.requests)
        assert (report.champion.requests, report.challenger.requests) == (400, 100)
        rate = report.challenger.error_rate
        assert rate is not None
        assert _testid(html, "error-rate-challenger") == (str(rate), f"{rate * 100:.2f}%")
        assert _testid(html, "error-rate-champion")[0] == str(report.champion.error_rate)
        assert _testid(html, "verdict")[1] == report.verdict
        assert _testid(html, "traffic")[0] == "20.0"
        assert "Fixed-horizon" in html
        assert "sequential" in html
        assert 'data-testid="form-traffic"' in html
        assert 'data-testid="form-promote"' in html
        assert 'data-testid="form-stop"' in html
        assert not re.search(r"<[^>]+\son[a-z]+=", html)  # no inline event handlers
        assert "<script>" not in html
        csrf = _hidden(html, "csrf")

        # CSRF: a POST without the session's token is refused and changes nothing
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/traffic", data={"traffic": "0", "csrf": "forged"}
        )
        assert r.status_code == 403
        r = await web.post(f"/console/ab-tests/{world.test_id}/traffic", data={"traffic": "0"})
        assert r.status_code == 403

        # a traffic change goes to the decider; the page and the audit log show it
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/traffic",
            data={"traffic": "35", "reason": "more data", "csrf": csrf},
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/console/ab-tests/{world.test_id}"
        page = await web.get(r.headers["location"])
        assert _testid(page.text, "traffic")[0] == "35.0"
        kind, text = re.search(r'data-kind="(\w+)">([^<]*)<', page.text).groups()  # type: ignore[union-attr]
        v2 = await (await world.services.reader()).get_model(CHALLENGER)
        assert v2 is not None
        assert kind == "ok"
        assert f"revision {v2.revision}" in text
        # the flash is shown once
        assert 'data-testid="flash"' not in (await web.get(r.headers["location"])).text

        audit = await web.get("/console/audit", params={"type": "ABTestTrafficChanged"})
        assert audit.status_code == 200
        rows = re.findall(r'data-testid="audit-row" data-type="(\w+)"', audit.text)
        assert rows == ["ABTestTrafficChanged"]
        assert "20.0% -&gt; 35.0%: more data" in audit.text
        assert _testid(audit.text, "audit-actor")[1] == "deployer-bob"

        # a rejected command: its code and message come back as the flash
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/traffic", data={"traffic": "150", "csrf": csrf}
        )
        page = await web.get(r.headers["location"])
        assert 'data-kind="error"' in page.text
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/stop", data={"reason": "done", "csrf": csrf}
        )
        page = await web.get(r.headers["location"])
        assert 'data-kind="ok"' in page.text
        assert _testid(page.text, "test-status")[1] == ""  # the badge is inside
        assert 'data-value="stopped"' in page.text
        assert 'data-testid="form-traffic"' not in page.text  # a stopped test has no actions
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/traffic", data={"traffic": "10", "csrf": csrf}
        )
        page = await web.get(r.headers["location"])
        assert "Rejected (" in page.text

        # the audit log: newest first, filters by model and actor, paging
        audit = await web.get("/console/audit")
        types = re.findall(r'data-testid="audit-row" data-type="(\w+)"', audit.text)
        assert types[0] == "ABTestStopped"
        assert types[-1] == "ModelRegistered"
        audit = await web.get("/console/audit", params={"model": "churn-v1"})
        assert re.findall(r'data-model-id="([^"]+)" data-position', audit.text) == ["churn-v1"]
        audit = await web.get("/console/audit", params={"actor": "ops", "since": "2000-01-01"})
        assert "ABTestTrafficChanged" not in re.findall(r'data-type="(\w+)"', audit.text)
        assert (await web.get("/console/audit", params={"since": "yesterday"})).status_code == 400

        # the test list, then logging out ends the session
        tests = await web.get("/console/ab-tests")
        assert f'data-test-id="{world.test_id}"' in tests.text
        r = await web.post("/console/logout", data={"csrf": "wrong"})
        assert r.status_code == 403
        r = await web.post("/console/logout", data={"csrf": csrf})
        assert r.status_code == 303
        assert (await web.get("/console/")).status_code == 303


async def test_a_viewer_sees_no_actions_and_cannot_post_them(
    settings: Settings, tmp_path: Path
) -> None:
    async with _world(settings, tmp_path, anonymous=True) as world, _browser(world.app) as web:
        # anonymous reads are on: pages render without a session, read-only
        page = await web.get(f"/console/ab-tests/{world.test_id}")
        assert page.status_code == 200
        assert "anonymous" in page.text
        assert 'data-testid="actions"' not in page.text
        assert (await web.get("/console/audit")).status_code == 200

        assert (await _login(web, VIEWER_TOKEN)).status_code == 303
        page = await web.get(f"/console/ab-tests/{world.test_id}")
        assert "viewer-vic" in page.text
        assert 'data-testid="actions"' not in page.text
        assert 'name="traffic"' not in page.text
        csrf = _hidden(page.text, "csrf")  # the logout form's
        for action, data in (("traffic", {"traffic": "50"}), ("promote", {}), ("stop", {})):
            r = await web.post(
                f"/console/ab-tests/{world.test_id}/{action}", data={**data, "csrf": csrf}
            )
            assert r.status_code == 403, action
        reader = await world.services.reader()
        v2 = await reader.get_model(CHALLENGER)
        assert v2 is not None
        assert (v2.traffic_percentage, v2.ab_test_id) == (20.0, world.test_id)
        audit = await web.get("/console/audit")
        types = re.findall(r'data-testid="audit-row" data-type="(\w+)"', audit.text)
        assert "ABTestStarted" in types
        assert "ABTestTrafficChanged" not in types
        assert "ABTestStopped" not in types


async def test_promote_from_the_page_keeps_the_report_as_evidence(
    settings: Settings, tmp_path: Path
) -> None:
    async with _world(settings, tmp_path, anonymous=False) as world, _browser(world.app) as web:
        await _login(web, DEPLOYER_TOKEN)
        page = await web.get(f"/console/ab-tests/{world.test_id}")
        csrf = _hidden(page.text, "csrf")
        r = await web.post(
            f"/console/ab-tests/{world.test_id}/promote", data={"reason": "wins", "csrf": csrf}
        )
        assert r.status_code == 303
        page = await web.get(r.headers["location"])
        assert 'data-kind="ok"' in page.text
        reader = await world.services.reader(world.services.tokens[DEPLOYER_TOKEN])
        v1 = await reader.get_model(CHAMPION)
        assert v1 is not None
        assert v1.served_by == CHALLENGER
        (promoted,) = [
            e for e in await reader.model_events(CHALLENGER) if e.type == "ChallengerPromoted"
        ]
        evidence = promoted.event.payload.evidence  # type: ignore[union-attr]
        assert evidence is not None
        assert evidence.figures["challenger_requests"] == 100
        model = await web.get(f"/console/models/{CHAMPION}")
        assert _testid(model.text, "status")[0] == "deprecated"
        assert 'data-testid="served-by"' in model.text


def test_masking_keeps_references_and_hides_secret_looking_values() -> None:
    cfg = {
        "credentials": {"apiKey": "env:KEY", "region": "eu-west-1", "token": "plain"},
        "parameters": {"note": "sk-" + "a" * 24, "nested": [{"password": "hunter2"}]},
        "endpoint": "https://x.example/api?sig=abc",
    }
    out = console.masked(cfg)
    assert out["credentials"] == {"apiKey": "env:KEY", "region": "eu-west-1", "token": console.MASK}
    assert out["parameters"] == {"note": console.MASK, "nested": [{"password": console.MASK}]}
    assert out["endpoint"] == console.MASK
    assert console.credential_refs(cfg["credentials"]) == [  # type: ignore[arg-type]
        ("apiKey", "env:KEY"),
        ("region", "eu-west-1"),
        ("token", console.MASK),
    ]
