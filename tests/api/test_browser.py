"""The web console in a real browser: Debian's headless Chromium driven by Playwright, against
a live stack (issue 16, item 5).

One in-process stack (decider, projector, predictor, monitor) on the test broker, and the
service (the JSON API and the console) served by uvicorn on a free 127.0.0.1 port
(``tests.api.live``). Seeded with the Python client: two ``custom`` models, an alias, an A/B
test at 20%, 600 predictions through the predictor and their outcomes, joined by the monitor.
The browser logs in with the admin's bearer token in the login form, opens every page, checks
that the figures it shows are the API's own JSON, changes the traffic from the A/B test page's
form and finds the event on the audit page.

A screenshot of every page (a 1366x800 window, the whole page) goes to the test's output
folder (``tmp_path/screenshots``) and, when ``CONSOLE_SCREENSHOTS=DIR`` is set, into DIR too
(the README's pictures: ``CONSOLE_SCREENSHOTS=docs/img pytest tests/api/test_browser.py``).

The module is skipped, with the reason, when Debian's chromium is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from model_registry.client import ModelRegistry
from registry.core.predictions import PredictionOutcome, PredictionRequest
from registry.core.types import ModelConfig
from registry.infra.settings import PredictorSettings, Settings
from tests.api.live import CALLABLE, LiveApi, live_api
from tests.consumers.monitor.streams import produce
from tests.helpers import eventually

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
        ".ci/run installs it)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, ViewportSize, async_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(120)

V1, V2, PROD = "lead-scoring-v1", "lead-scoring-v2", "lead-scoring@production"
PREDICTIONS = 600
VIEWPORT: ViewportSize = {"width": 1366, "height": 800}
WAIT_MS = 15_000  # every browser wait is bounded


def _config(model_id: str, version: str, rule: str, description: str) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "name": "Lead scoring",
            "version": version,
            "type": "classification",
            "provider": "custom",
            "status": "active",
            "description": description,
            "providerConfig": {"provider": "custom", "callable": f"{CALLABLE}:{rule}"},
        }
    )


def _lead(i: int) -> dict[str, int]:
    return {"visits": i % 10, "emails_opened": (i // 10) % 5}


async def _seed(settings: Settings) -> None:
    """Two models, an alias, a 20% test; predictions to the alias and their ground truth."""
    async with ModelRegistry(settings) as reg:
        await reg.register(_config(V1, "1.4.0", "score", "Rules on visits and opened emails"))
        await reg.record_metrics(V1, {"accuracy": 81.5, "precision": 77.0, "recall": 70.2})
        await reg.assign_alias(PROD, V1)
        await reg.register(_config(V2, "2.0.0", "score_v2", "Visits only"))
        await reg.start_ab_test(V2, V1, 20, guardrails={"maxErrorRate": 10, "minSamples": 50})
    requests = [
        PredictionRequest(id=f"p-{i}", model_id=PROD, unit_id=f"lead-{i}", input=_lead(i))
        for i in range(PREDICTIONS)
    ]
    await produce(
        settings,
        "predictions.requests",
        ((r.unit_id.encode(), r.model_dump_json().encode()) for r in requests if r.unit_id),
    )
    truth = [
        PredictionOutcome(request_id=f"p-{i}", actual=int(_lead(i)["visits"] >= 3))
        for i in range(PREDICTIONS)
    ]
    await produce(
        settings,
        "predictions.outcomes",
        ((o.request_id.encode(), o.model_dump_json().encode()) for o in truth),
    )


async def _settled_report(api: LiveApi) -> dict[str, Any]:
    """The API's report once the monitor has every request and every outcome (so the figures
    no longer move while the page and the API are compared)."""
    async with api.client(api.admin) as c:

        async def complete() -> dict[str, Any] | None:
            r = await c.get(f"/ab-tests/{V2}/report")
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()
            arms = (body["champion"], body["challenger"])
            done = sum(a["requests"] for a in arms) == PREDICTIONS
            return body if done and sum(a["scored"] for a in arms) == PREDICTIONS else None

        report: dict[str, Any] | None = await eventually(
            complete, timeout=60, interval=0.3, what="every prediction and outcome in the report"
        )
        assert report is not None
        return report


class Shots:
    """Full-page screenshots into the test's folder, and into $CONSOLE_SCREENSHOTS when set."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "screenshots"
        self.folder.mkdir()
        extra = os.environ.get("CONSOLE_SCREENSHOTS")
        self.extra = Path(extra) if extra else None
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    async def take(self, page: Page, name: str) -> None:
        path = self.folder / f"console-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if self.extra is not None:
            shutil.copyfile(path, self.extra / path.name)


async def _value(page: Page, testid: str) -> str | None:
    return await page.get_by_test_id(testid).first.get_attribute("data-value")


async def _text(page: Page, testid: str) -> str:
    return (await page.get_by_test_id(testid).first.inner_text()).strip()


async def _get(api: LiveApi, path: str, **params: Any) -> Any:
    async with api.client(api.admin) as c:
        r = await c.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


async def _audit(api: LiveApi, **params: Any) -> list[dict[str, Any]]:
    async with api.client(api.admin) as c:
        r = await c.get("/audit", params=params)
        assert r.status_code == 200, r.text
        return [orjson.loads(line) for line in r.text.splitlines() if line.strip()]


async def _launch() -> Any:
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"], timeout=WAIT_MS
    )
    return playwright, browser


async def test_the_console_in_a_browser(settings: Settings, tmp_path: Path) -> None:  # noqa: PLR0915
    settings = settings.with_(
        predictor=PredictorSettings(assignment="all", provider_retries=0, cache_ttl_s=0)
    )
    components = ("decider", "projector", "predictor", "monitor")
    async with live_api(settings, components) as api:
        await _seed(api.settings)
        report = await _settled_report(api)
        test_id = report["test_id"]
        shots = Shots(tmp_path)
        playwright, browser = await _launch()
        try:
            await _browse(api, browser, shots, report, test_id)
        finally:
            await browser.close()
            await playwright.stop()
    assert [p.name for p in shots.taken] == [
        "console-login.png",
        "console-models.png",
        "console-model.png",
        "console-ab-tests.png",
        "console-ab-test.png",
        "console-ab-test-after-traffic.png",
        "console-audit.png",
    ]
    for path in shots.taken:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def _browse(  # noqa: PLR0915
    api: LiveApi, browser: Browser, shots: Shots, report: dict[str, Any], test_id: str
) -> None:
    context = await browser.new_context(
        base_url=api.url.rstrip("/"), viewport=VIEWPORT, device_scale_factor=1
    )
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            errors.append(f"{m.text} ({m.location.get('url')})") if m.type == "error" else None
        ),
    )
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    # not logged in: the console sends to the login form; log in with the admin's token
    await page.goto("/console/")
    assert "/console/login" in page.url
    await shots.take(page, "login")
    await page.get_by_test_id("token").fill(api.admin)
    await page.get_by_test_id("login-submit").click()
    await page.wait_for_url(re.compile(r"/console/(\?.*)?$"))
    assert await _text(page, "actor") == api.admin_actor
    assert api.admin not in await page.content()  # the token is never shown back

    # the model list: the API's models, with their revisions and the test's roles
    models = await _get(api, "/models")
    assert await _value(page, "model-count") == str(models["total"]) == "2"
    for item in models["items"]:
        row = page.locator(f'[data-testid="model-row"][data-model-id="{item["config"]["id"]}"]')
        await row.wait_for()
        assert await row.get_by_test_id("revision").get_attribute("data-value") == str(
            item["revision"]
        )
        assert (await row.get_by_test_id("version").inner_text()).strip() == item["config"][
            "version"
        ]
    challenger_row = page.locator(f'[data-testid="model-row"][data-model-id="{V2}"]')
    assert await challenger_row.get_by_test_id("ab-state").get_attribute("data-role") == (
        "challenger"
    )
    assert await challenger_row.get_by_test_id("traffic").get_attribute("data-value") == "20.0"
    await shots.take(page, "models")

    # a model page: revision, status, version, aliases as GET /models/{id} has them
    await page.locator(f'[data-testid="model-row"][data-model-id="{V1}"] a').first.click()
    await page.wait_for_url(f"**/console/models/{V1}")
    v1 = await _get(api, f"/models/{V1}")
    assert await _value(page, "revision") == str(v1["revision"])
    assert await _text(page, "revision") == str(v1["revision"])
    assert await _value(page, "status") == v1["config"]["status"] == "active"
    assert await _text(page, "version") == v1["config"]["version"]
    assert await _text(page, "aliases") == " ".join(v1["aliases"]) == PROD
    assert await _value(page, "metric-accuracy") == str(v1["config"]["metrics"]["accuracy"])
    await shots.take(page, "model")

    # the A/B test list: the API's tests with their traffic
    await page.goto("/console/ab-tests")
    tests = (await _get(api, "/ab-tests"))["items"]
    assert await _value(page, "test-count") == str(len(tests)) == "1"
    row = page.locator(f'[data-testid="ab-test-row"][data-test-id="{test_id}"]')
    assert await row.get_by_test_id("traffic").get_attribute("data-value") == str(
        float(tests[0]["trafficPercentage"])
    )
    await shots.take(page, "ab-tests")

    # the A/B test page: the report's figures and verdict, as GET /ab-tests/{ref}/report says
    await row.locator("a").first.click()
    await page.wait_for_url(f"**/console/ab-tests/{quote(test_id, safe=':@')}")
    for arm in ("champion", "challenger"):
        figures = report[arm]
        assert await _value(page, f"requests-{arm}") == str(figures["requests"])
        assert await _text(page, f"requests-{arm}") == str(figures["requests"])
        assert await _value(page, f"errors-{arm}") == str(figures["errors"])
        assert await _value(page, f"scored-{arm}") == str(figures["scored"])
        assert await _value(page, f"error-rate-{arm}") == str(figures["error_rate"])
    assert report["champion"]["requests"] + report["challenger"]["requests"] == PREDICTIONS
    assert report["challenger"]["requests"] > 0
    assert await _text(page, "verdict") == report["verdict"]
    assert await _value(page, "traffic") == "20.0"
    plot = page.get_by_test_id("plot")
    await plot.scroll_into_view_if_needed()
    await page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=plot]');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=WAIT_MS,
    )
    await page.evaluate("window.scrollTo(0, 0)")
    await shots.take(page, "ab-test")
    before = await _get(api, f"/models/{V2}")

    # change the traffic from the page's form: the flash says so, the API agrees
    await page.get_by_test_id("traffic-input").fill("35")
    await page.locator('[data-testid="form-traffic"] input[name="reason"]').fill("more data")
    await page.get_by_test_id("traffic-submit").click()
    flash = page.get_by_test_id("flash")
    await flash.wait_for()
    assert await flash.get_attribute("data-kind") == "ok"
    after = await _get(api, f"/models/{V2}")
    assert after["abTest"]["trafficPercentage"] == 35.0
    assert after["revision"] == before["revision"] + 1
    assert (await flash.inner_text()).strip() == (
        f"Traffic set to 35% (revision {after['revision']})."
    )
    assert await _value(page, "traffic") == "35.0"
    await shots.take(page, "ab-test-after-traffic")

    # the audit page shows the event, filtered with its form, as GET /audit has it
    await page.goto("/console/audit")
    first = page.get_by_test_id("audit-row").first
    assert await first.get_attribute("data-type") == "ABTestTrafficChanged"
    await page.get_by_test_id("filter-type").select_option("ABTestTrafficChanged")
    await page.locator('[data-testid="audit-filters"] button[type="submit"]').click()
    await page.wait_for_url(re.compile(r"type=ABTestTrafficChanged"))
    rows = page.get_by_test_id("audit-row")
    events = await _audit(api, type="ABTestTrafficChanged")
    assert await rows.count() == len(events) == 1
    (event,) = events
    assert await rows.first.get_attribute("data-type") == "ABTestTrafficChanged"
    assert await rows.first.get_attribute("data-model-id") == V2
    assert await rows.first.get_attribute("data-position") == (
        f"{event['partition']}:{event['offset']}"
    )
    assert await _text(page, "audit-actor") == api.admin_actor
    assert await _text(page, "audit-summary") == f"A/B {test_id}: 20.0% -> 35.0%: more data"
    await shots.take(page, "audit")

    assert failed == []
    # no script error nor failed resource on any page (a CSP violation is one; the pages
    # declare an empty icon, so the browser does not guess /favicon.ico either)
    assert errors == []
    await context.close()
