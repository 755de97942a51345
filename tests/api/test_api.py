"""The HTTP API on a live stack: authentication, writes with the CLI's guarantees, reads,
audit, predictions, reports (docs/api.md)."""

from __future__ import annotations

import asyncio
import stat
from typing import Any

import httpx
import orjson
import pytest

from model_registry.api.app import create_app
from model_registry.api.tokens import TokenStore
from registry.infra.settings import ApiSettings, Settings
from tests.api.live import config, live_api
from tests.helpers import eventually

PROBLEM = "application/problem+json"
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["code"] == code, body
    assert set(body) == {"type", "title", "status", "detail", "code", "field"}
    return body


async def test_authentication_and_roles(settings: Settings) -> None:
    async with live_api(settings) as api:
        async with api.client() as anon:
            r = await anon.get("/models")
            _problem(r, 401, "Unauthenticated")
            assert r.headers["www-authenticate"] == "Bearer"
            assert (await anon.get("/health")).json()["status"] == "ok"  # no token needed
        async with api.client("mrt_" + "x" * 43) as bad:
            _problem(await bad.get("/models"), 401, "Unauthenticated")
        async with api.client(api.read_only) as ro:
            assert (await ro.get("/models")).status_code == 200
            r = await ro.post("/models", json=config("ro-model"))
            _problem(r, 403, "Forbidden")
        async with api.client(api.alice) as alice:  # an author: registers, cannot activate
            r = await alice.post("/models", json=config("alice-model"))
            assert r.status_code == 200, r.text
            r = await alice.post("/models/alice-model/status", json={"status": "active"})
            body = _problem(r, 403, "Forbidden")
            assert "deployer" in body["detail"]
            assert "alice" in body["detail"]
            view = (await alice.get("/models/alice-model")).json()
            assert view["config"]["status"] == "testing"
        # the event names the person and the gateway that signed for it
        async with api.client(api.admin) as admin:
            lines = (await admin.get("/audit", params={"model": "alice-model"})).text.splitlines()
            event = orjson.loads(lines[0])["event"]
            assert event["actor"] == "alice"
            assert event["signed_by"] == "api"
        # a revoked token stops working at once
        store = TokenStore(api.settings.api_tokens_file)
        alice_id = next(t.id for t in store.tokens() if t.actor == "alice")
        store.revoke(alice_id)
        async with api.client(api.alice) as alice:
            _problem(await alice.get("/models"), 401, "Unauthenticated")
        mode = stat.S_IMODE(api.settings.api_tokens_file.stat().st_mode)
        assert mode == 0o600
        assert api.admin not in api.settings.api_tokens_file.read_text()


async def test_anonymous_reads_only_when_the_operator_turns_them_on(settings: Settings) -> None:
    async with live_api(settings) as api:
        for anonymous, expected in ((False, 401), (True, 200)):
            s = api.settings.with_(api=ApiSettings(anonymous_reads=anonymous))
            app = create_app(s)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as anon:
                assert (await anon.get("/models")).status_code == expected
                r = await anon.post("/models", json=config("anon-model"))
                _problem(r, 401, "Unauthenticated")
            await app.state.services.close()


async def test_writes_keep_the_clis_guarantees(settings: Settings) -> None:  # noqa: PLR0915
    async with live_api(settings) as api, api.client(api.admin) as c:
        # register, then read it at once (read-your-writes)
        r = await c.post("/models", json=config("lead-v1"), headers={"Idempotency-Key": "reg-1"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["outcome"] == "accepted"
        assert first["revision"] == 1
        assert first["events"][0]["type"] == "ModelRegistered"
        assert {"partition", "offset"} <= set(first["events"][0])
        got = await c.get("/models/lead-v1")
        assert got.status_code == 200
        assert got.json()["revision"] == 1
        assert got.headers["etag"] == '"1"'

        # the same Idempotency-Key: the same command, answered with the same events
        again = await c.post(
            "/models", json=config("lead-v1"), headers={"Idempotency-Key": "reg-1"}
        )
        assert again.json()["outcome"] == "duplicate"
        assert again.json()["events"] == first["events"]
        _problem(
            await c.post("/models", json=config("x"), headers={"Idempotency-Key": "a b"}),
            400,
            "InvalidIdempotencyKey",
        )

        # If-Match: a stale revision is refused with 412; the current one passes
        r = await c.post(
            "/models/lead-v1/status", json={"status": "active"}, headers={"If-Match": '"0"'}
        )
        body = _problem(r, 412, "VersionConflict")
        assert "1" in body["detail"]
        r = await c.post(
            "/models/lead-v1/status", json={"status": "active"}, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 200
        assert r.json()["revision"] == 2
        assert r.headers["etag"] == '"2"'
        assert (await c.get("/models/lead-v1")).json()["config"]["status"] == "active"

        # a rejection: problem+json with its code and field
        r = await c.post("/models/lead-v1/versions", json={"version": "2.0.0"})
        body = _problem(r, 422, "MajorVersionMismatch")
        r = await c.post("/models/lead-v1/status", json={"status": "testing"})
        _problem(r, 409, "InvalidTransition")
        _problem(
            await c.post("/models/nobody/status", json={"status": "active"}), 404, "ModelNotFound"
        )
        r = await c.post("/models", json={**config("bad"), "version": "one"})
        body = _problem(r, 422, "InvalidRequest")
        assert body["field"] == "version"
        assert "one" not in body["detail"]

        # a raw secret is refused, named by its path and never echoed
        cfg = config("leaky")
        cfg["providerConfig"]["apiKey"] = SECRET
        r = await c.post("/models", json=cfg)
        body = _problem(r, 422, "SecretInConfig")
        assert body["field"] == "providerConfig.apiKey"
        assert SECRET not in r.text
        r = await c.patch("/models/lead-v1", json={"description": f"key {SECRET}"})
        _problem(r, 422, "SecretInConfig")
        assert SECRET not in r.text

        # bounds at the edge
        big = {"description": "x" * (1024 * 1024 + 10)}
        _problem(await c.patch("/models/lead-v1", json=big), 413, "OverLimit")
        deep: Any = 1
        for _ in range(40):
            deep = {"a": deep}
        _problem(await c.patch("/models/lead-v1", json={"parameters": deep}), 422, "OverLimit")

        # metrics, release, config: each answered with its revision
        r = await c.post("/models/lead-v1/metrics", json={"metrics": {"accuracy": 87.5}})
        assert r.status_code == 200, r.text
        r = await c.post("/models/lead-v1/versions", json={"version": "1.1.0", "status": "active"})
        assert r.status_code == 200, r.text
        r = await c.patch("/models/lead-v1", json={"description": "v1.1"})
        assert r.status_code == 200, r.text
        view = (await c.get("/models/lead-v1")).json()
        assert view["config"]["version"] == "1.1.0"
        assert view["config"]["description"] == "v1.1"
        versions = (await c.get("/models/lead-v1/versions")).json()
        assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
        history = (await c.get("/models/lead-v1/history")).json()
        assert [h["toStatus"] for h in history][:2] == ["testing", "active"]
        old = (
            await c.get("/models/lead-v1", params={"as_of": first["events"][0]["offset"]})
        ).json()
        assert old["config"]["status"] == "testing"
        assert old["revision"] == 1

        # aliases: assign, read through the alias, list, remove
        r = await c.post("/models/lead-v1/aliases", json={"alias": "lead@production"})
        assert r.status_code == 200, r.text
        assert (await c.get("/models/lead@production")).json()["config"]["id"] == "lead-v1"
        assert (await c.get("/aliases")).json() == [
            {
                "alias": "lead@production",
                "modelId": "lead-v1",
                "version": "1.1.0",
                "status": "active",
            }
        ]
        assert (await c.delete("/aliases/lead@production")).status_code == 200
        _problem(await c.get("/models/lead@production"), 404, "ModelNotFound")
        _problem(await c.delete("/aliases/lead@production"), 404, "AliasNotFound")

        # listing: filters and pages
        for i in range(3):
            await c.post("/models", json=config(f"page-{i}"))
        page = (await c.get("/models", params={"limit": 2, "status": "testing"})).json()
        assert [m["config"]["id"] for m in page["items"]] == ["page-0", "page-1"]
        assert page["total"] == 3
        assert page["nextCursor"]
        rest = (
            await c.get(
                "/models", params={"limit": 2, "status": "testing", "cursor": page["nextCursor"]}
            )
        ).json()
        assert [m["config"]["id"] for m in rest["items"]] == ["page-2"]
        assert rest["nextCursor"] is None
        _problem(await c.get("/models", params={"type": "astrology"}), 422, "InvalidRequest")
        _problem(await c.get("/models", params={"limit": 501}), 422, "InvalidRequest")

        # audit: JSON lines with the CLI's filters
        r = await c.get("/audit", params={"model": "lead-v1"})
        assert r.headers["content-type"].startswith("application/x-ndjson")
        entries = [orjson.loads(line) for line in r.text.splitlines()]
        assert [e["event"]["type"] for e in entries][:2] == [
            "ModelRegistered",
            "ModelStatusChanged",
        ]
        assert all(e["event"]["model_id"] == "lead-v1" for e in entries)
        r = await c.get("/audit", params={"type": ["AliasAssigned", "AliasRemoved"]})
        assert [orjson.loads(x)["event"]["type"] for x in r.text.splitlines()] == [
            "AliasAssigned",
            "AliasRemoved",
        ]
        r = await c.get("/audit", params={"actor": "alice"})
        assert r.text == ""
        r = await c.get("/audit", params={"limit": 2})
        assert len(r.text.splitlines()) == 2
        r = await c.get("/audit", params={"since": "2999-01-01T00:00:00Z"})
        assert r.text == ""
        _problem(await c.get("/audit", params={"type": "Bogus"}), 422, "InvalidRequest")

        # no predictor in this stack: /predict times out with a problem
        r = await c.post(
            "/predict", json={"model_id": "lead-v1", "input": {"visits": 3}, "timeout_s": 0.5}
        )
        _problem(r, 504, "PredictionTimeout")


@pytest.mark.slow
async def test_predict_report_and_plot(settings: Settings) -> None:
    components = ("decider", "projector", "predictor", "monitor")
    async with live_api(settings, components) as api, api.client(api.admin) as c:
        for body in (
            config("champ", status="active"),
            config("chall", status="active", rule="score_v2"),
        ):
            assert (await c.post("/models", json=body)).status_code == 200
        r = await c.post(
            "/ab-tests",
            json={
                "challengerModelId": "chall",
                "championModelId": "champ",
                "trafficPercentage": 50,
            },
        )
        assert r.status_code == 200, r.text
        tests = (await c.get("/ab-tests", params={"model": "champ", "running": True})).json()
        assert tests["items"][0]["trafficPercentage"] == 50

        async def ask(i: int) -> dict[str, Any]:
            r = await c.post(
                "/predict",
                json={"model_id": "champ", "input": {"visits": i % 10}, "unit_id": f"lead-{i}"},
            )
            assert r.status_code == 200, r.text
            result: dict[str, Any] = r.json()
            return result

        results = await asyncio.gather(*(ask(i) for i in range(30)))
        assert {r["variant"] for r in results} == {"champion", "challenger"}
        assert all(r["requested_model_id"] == "champ" and r["output"] for r in results)
        explained = await c.post(
            "/predict", json={"model_id": "champ", "input": {"visits": 5}, "explain": True}
        )
        assert explained.status_code == 200
        assert "explanation" in explained.json() or "explanation_error" in explained.json()

        async def reported() -> dict[str, Any] | None:
            r = await c.get("/ab-tests/champ/report")
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()
            seen = body["champion"]["requests"] + body["challenger"]["requests"]
            return body if seen >= 30 else None

        report = await eventually(reported, timeout=30, interval=0.2, what="the report")
        assert report["champion_model_id"] == "champ"
        assert report["verdict"]
        png = await c.get("/ab-tests/champ/plot.png")
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        _problem(await c.get("/ab-tests/nothing/report"), 404, "ABTestNotFound")

        r = await c.post("/ab-tests/chall/traffic", json={"trafficPercentage": 10})
        assert r.status_code == 200, r.text
        r = await c.post("/ab-tests/chall/promote", json={"reason": "better"})
        assert r.status_code == 200, r.text
        lines = (await c.get("/audit", params={"type": "ChallengerPromoted"})).text.splitlines()
        evidence = orjson.loads(lines[0])["event"]["payload"]["evidence"]
        assert evidence["figures"]["test_id"] == report["test_id"]
        r = await c.post("/ab-tests/chall/rollback", json={})
        assert r.status_code == 200, r.text
