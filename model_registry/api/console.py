"""The web console: server-rendered pages over the same services as the JSON API.

Mounted by the app with ``app.include_router(console.router, prefix="/console")``; everything
it reads or writes goes through ``request.app.state.services`` (``ApiServices``).

Sessions: ``POST /login`` checks a bearer token with ``services.authenticate`` and keeps it in
an HttpOnly, SameSite=Strict cookie (Secure over https); every page re-authenticates the
cookie, so a revoked token stops working at once. Without a cookie a page is shown only when
``services.authenticate(None)`` gives an anonymous principal (anonymous reads on).

CSRF: every form carries a token bound to the session, ``HMAC(key, sha256(bearer token))``
with a per-process random key (or ``app.state.console_secret`` when the app sets one, e.g.
to share it between workers); the login form, which has no session yet, uses a random value
in a cookie compared to the form's field (double submit). A POST without the right token is
refused with 403.

Pages are Jinja2 templates with autoescaping on; the only script is ``static/console.js``
(no inline script or event handler), and every response carries a strict
Content-Security-Policy. The token is never rendered; configurations are shown with their
credentials as reference names only and anything secret-looking masked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from consumers.monitor.errors import TestNotFound
from consumers.monitor.guardrails import evaluate
from consumers.monitor.report import ComparisonReport, build_report
from model_registry.api.services import ApiServices, Principal
from model_registry.evidence import evidence_of, running_report
from model_registry.guard import thresholds_of
from model_registry.render.reads import summary
from projections.audit import AuditEntry, entry_from_row
from projections.errors import ProjectionUnavailable
from projections.views import ABTestView, ModelView
from registry.core.errors import RegistryError, Rejected
from registry.core.messages import REGISTRY_KEY
from registry.core.secrets import looks_secret
from registry.core.state import iso
from registry.core.types import (
    NON_SECRET_CREDENTIAL_KEYS,
    NON_SECRET_SETTING_KEYS,
    SECRET_KEY,
    ModelType,
    Provider,
    Status,
    is_secret_reference,
)
from registry.decider.client import CommandClient

__all__ = ["CSP", "router"]

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
SESSION_COOKIE = "mr_console"
LOGIN_COOKIE = "mr_console_login"
FLASH_COOKIE = "mr_console_flash"
PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50
MAX_TOKEN = 4096
MASK = "••••••"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_PROCESS_KEY = secrets.token_bytes(32)
_PLOT_LOCK = threading.Lock()  # pyplot keeps global state: one figure at a time

EVENT_TYPES = (
    "ModelRegistered",
    "ModelVersionReleased",
    "ModelStatusChanged",
    "ModelMetricsRecorded",
    "ModelConfigUpdated",
    "ABTestStarted",
    "ABTestTrafficChanged",
    "ABTestStopped",
    "ChallengerPromoted",
    "PromotionRolledBack",
    "AliasAssigned",
    "AliasRemoved",
    "ModelUnregistered",
    "RegistryCleared",
)
GUARD_ACTOR = "monitor"
GUARD_EVENTS = ("ABTestTrafficChanged", "ABTestStopped", "ChallengerPromoted")

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

_STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


# --------------------------------------------------------------------------- formatting


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage (``0.1`` -> ``10.00%``); ``-`` for none."""
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_time(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_day(value: datetime | str | None) -> str:
    """A time to the minute (lists; the full time is in the title)."""
    return fmt_time(value)[:16]


def fmt_traffic(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def raw(value: Any) -> str:
    """A figure's exact value for ``data-value`` (what tests compare with the JSON API)."""
    if value is None:
        return ""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return ""
    return str(value)


def _interval(c: Any, which: str) -> str:
    """A comparison's interval as ``+1.23 [+0.50, +2.10]`` (points for rates)."""
    if c is None:
        return "-"
    d = c.sequential if which == "sequential" else c.difference
    if d is None:
        return "-"
    pct = c.metric in {"error rate", "accuracy"}
    scale, unit = (100, " pp") if pct else (1, "")
    return f"{d.estimate * scale:+.2f}{unit} [{d.low * scale:+.2f}, {d.high * scale:+.2f}]"


_env.filters.update(
    pct=fmt_pct, num=fmt_num, time=fmt_time, day=fmt_day, traffic=fmt_traffic, raw=raw
)
_env.globals.update(interval=_interval, quote=lambda s: quote(str(s), safe=""))


# --------------------------------------------------------------------------- secrets


def _secret_key(key: str) -> bool:
    if key in NON_SECRET_SETTING_KEYS or key in NON_SECRET_CREDENTIAL_KEYS:
        return False
    return SECRET_KEY.search(key) is not None


def masked(value: Any, under_secret_key: bool = False) -> Any:
    """``value`` (a wire config or part of one) with anything secret-looking replaced.

    A string under a secret-looking key stays only when it is a reference
    (``env:NAME``/``file:/path``); any string (or key) with a well-known secret format is
    masked wherever it is."""
    if isinstance(value, str):
        if looks_secret(value) or (under_secret_key and not is_secret_reference(value)):
            return MASK
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            name = str(key)
            shown = MASK if looks_secret(name) else name
            plain = name in NON_SECRET_SETTING_KEYS or name in NON_SECRET_CREDENTIAL_KEYS
            out[shown] = masked(inner, not plain and (under_secret_key or _secret_key(name)))
        return out
    if isinstance(value, list | tuple):
        return [masked(v, under_secret_key) for v in value]
    return value


def credential_refs(creds: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(credential name, reference) pairs; a value that is not a reference is masked."""
    if not creds:
        return []
    out = []
    for key, value in creds.items():
        name = MASK if looks_secret(str(key)) else str(key)
        if is_secret_reference(value) or (
            key in NON_SECRET_CREDENTIAL_KEYS and isinstance(value, str) and not looks_secret(value)
        ):
            out.append((name, str(value)))
        else:
            out.append((name, MASK))
    return out


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class Session:
    """Who is looking, and the CSRF token of their forms."""

    principal: Principal
    csrf: str

    @property
    def may_deploy(self) -> bool:
        return not self.principal.anonymous and self.principal.may("deployer")


def _services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


def _key(request: Request) -> bytes:
    configured = getattr(request.app.state, "console_secret", None)
    if isinstance(configured, bytes | str) and configured:
        return configured.encode() if isinstance(configured, str) else configured
    return _PROCESS_KEY


def csrf_token(request: Request, token: str | None) -> str:
    """The CSRF token of a session: bound to its bearer token, never revealing it."""
    digest = hashlib.sha256((token or "").encode()).digest()
    return hmac.new(_key(request), b"console-csrf:" + digest, hashlib.sha256).hexdigest()


def _session(request: Request) -> Session | None:
    services = _services(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        principal = services.authenticate(token[:MAX_TOKEN])
        if principal is None or principal.anonymous:
            return None  # revoked or unknown: log in again
        return Session(principal, csrf_token(request, token))
    principal = services.authenticate(None)
    if principal is None:
        return None
    return Session(principal, csrf_token(request, None))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/console"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _headers(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers[name] = value
    return response


def _redirect(url: str) -> Response:
    return _headers(RedirectResponse(url, status_code=303))


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = _redirect(f"{_base(request)}/login?{urlencode({'next': target})}")
    if request.cookies.get(SESSION_COOKIE):
        response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)
    return response


def _safe_next(request: Request, target: str | None) -> str:
    base = _base(request)
    if (
        target
        and target.startswith(base + "/")
        and "//" not in target
        and "\\" not in target
        and not any(ord(ch) < 32 for ch in target)
        and not target.startswith(base + "/login")
    ):
        return target
    return base + "/"


def _sign(request: Request, text: bytes) -> str:
    return hmac.new(_key(request), b"console-flash:" + text, hashlib.sha256).hexdigest()[:32]


def _set_flash(request: Request, response: Response, kind: str, text: str) -> None:
    body = orjson.dumps({"kind": kind, "text": text[:1000]})
    value = base64.urlsafe_b64encode(body).decode() + "." + _sign(request, body)
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _flash(request: Request) -> dict[str, str] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value or "." not in value:
        return None
    encoded, _, mac = value.rpartition(".")
    try:
        body = base64.urlsafe_b64decode(encoded.encode())
    except ValueError:
        return None
    if not hmac.compare_digest(mac, _sign(request, body)):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    return {"kind": str(data.get("kind", "info")), "text": str(data.get("text", ""))}


def render(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page: the template with the shared context, the flash consumed, strict headers."""
    flash = _flash(request)
    html = _env.get_template(template).render(
        base=_base(request),
        session=session,
        principal=session.principal if session else None,
        csrf=session.csrf if session else "",
        flash=flash,
        path=request.url.path,
        **context,
    )
    response = _headers(HTMLResponse(html, status_code=status_code))
    if flash is not None or request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path="/", samesite="strict", httponly=True)
    return response


def _not_found(request: Request, session: Session, what: str) -> Response:
    return render(request, "error.html", session, status_code=404, title="Not found", message=what)


def _unavailable(request: Request, session: Session, exc: Exception) -> Response:
    return render(
        request,
        "error.html",
        session,
        status_code=503,
        title="Projection unavailable",
        message=str(exc),
    )


# --------------------------------------------------------------------------- static files


@router.get("/static/{name}")
async def static(name: str) -> Response:
    kind = _STATIC.get(name)
    if kind is None:
        return Response(status_code=404)
    body = (HERE / "static" / name).read_bytes()
    response = Response(body, media_type=kind)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --------------------------------------------------------------------------- login


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    nonce = secrets.token_urlsafe(24)
    session = _session(request) if request.cookies.get(SESSION_COOKIE) else None
    response = render(
        request,
        "login.html",
        session,
        login_csrf=nonce,
        next=_safe_next(request, next),
        error=None,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=3600,
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    token = str(form.get("token", "")).strip()
    nonce = str(form.get("csrf", ""))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(nonce.encode(), expected.encode()):
        return render(
            request,
            "error.html",
            None,
            status_code=403,
            title="Forbidden",
            message="The login form expired or did not come from this console. Reload it.",
        )
    target = _safe_next(request, str(form.get("next", "")) or None)
    principal = (
        _services(request).authenticate(token) if token and len(token) <= MAX_TOKEN else None
    )
    if principal is None or principal.anonymous:
        fresh = secrets.token_urlsafe(24)
        response = render(
            request,
            "login.html",
            None,
            status_code=401,
            login_csrf=fresh,
            next=target,
            error="That token was not accepted.",
        )
        response.set_cookie(
            LOGIN_COOKIE,
            fresh,
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            max_age=3600,
        )
        return response
    response = _redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/", samesite="strict", httponly=True)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    token = request.cookies.get(SESSION_COOKIE)
    if not token or not hmac.compare_digest(
        str(form.get("csrf", "")).encode(), csrf_token(request, token).encode()
    ):
        return _forbidden(request, None, "Refused: the form's CSRF token is missing or wrong.")
    response = _redirect(f"{_base(request)}/login")
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)
    return response


def _forbidden(request: Request, session: Session | None, message: str) -> Response:
    return render(
        request, "error.html", session, status_code=403, title="Forbidden", message=message
    )


# --------------------------------------------------------------------------- models


def _choice(value: str | None, allowed: Sequence[str]) -> str | None:
    return value if value in allowed else None


def _page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _ab_state(view: ModelView, champions: dict[str, list[ABTestView]]) -> list[dict[str, Any]]:
    """What A/B tests a model is in: as challenger (its split) and as champion."""
    out: list[dict[str, Any]] = []
    if view.ab_test_id:
        out.append(
            {
                "role": "shadow" if view.ab_mode == "shadow" else "challenger",
                "test_id": view.ab_test_id,
                "traffic": view.traffic_percentage,
                "other": view.champion_model_id,
            }
        )
    for t in champions.get(view.model_id, ()):
        out.append(
            {
                "role": "champion",
                "test_id": t.test_id,
                "traffic": t.traffic_percentage,
                "other": t.challenger_model_id,
            }
        )
    return out


@router.get("/")
async def models_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    q = request.query_params
    types = [t.value for t in ModelType]
    statuses = [s.value for s in Status]
    providers = [p.value for p in Provider]
    mtype = _choice(q.get("type"), types)
    status = _choice(q.get("status"), statuses)
    provider = _choice(q.get("provider"), providers)
    search = (q.get("q") or "").strip()[:200]
    page = _page_number(q.get("page"))
    try:
        reader = await _services(request).reader(session.principal)
        views = await reader.list_models(mtype, status, provider)
        running = await reader.list_ab_tests(running=True)
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    if search:
        needle = search.casefold()
        views = [v for v in views if needle in v.model_id.casefold() or needle in v.name.casefold()]
    champions: dict[str, list[ABTestView]] = {}
    for t in running:
        champions.setdefault(t.champion_model_id, []).append(t)
    total = len(views)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(page, pages)
    shown = views[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    filters = {
        k: v
        for k, v in (("type", mtype), ("status", status), ("provider", provider), ("q", search))
        if v
    }
    return render(
        request,
        "models.html",
        session,
        title="Models",
        nav="models",
        rows=[{"view": v, "ab": _ab_state(v, champions)} for v in shown],
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1 if total else 0,
        last=(page - 1) * PAGE_SIZE + len(shown),
        filters=filters,
        query_for=lambda p: urlencode({**filters, "page": p}),
        types=types,
        statuses=statuses,
        providers=providers,
    )


def _parse_as_of(text: str | None) -> datetime | int | None:
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@router.get("/models/{model_id}")
async def model_page(request: Request, model_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    as_of_text = (request.query_params.get("as_of") or "").strip()[:64]
    try:
        as_of = _parse_as_of(as_of_text)
    except ValueError:
        return render(
            request,
            "error.html",
            session,
            status_code=400,
            title="Bad request",
            message="as_of must be an ISO-8601 time (2026-11-01T00:00:00Z) or an offset.",
        )
    try:
        reader = await _services(request).reader(session.principal)
        view = await reader.get_model(model_id, as_of=as_of)
        if view is None:
            return _not_found(request, session, f"No model '{model_id}'.")
        versions = await reader.list_versions(view.model_id)
        history = await reader.status_history(view.model_id)
        tests = await reader.list_ab_tests(view.model_id)
        events = await reader.model_events(view.model_id)
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    cfg = view.config
    wire = cfg.wire()
    provider_config = cfg.provider_config
    metrics = cfg.metrics.model_dump(by_alias=True, exclude_none=True) if cfg.metrics else {}
    recent = list(reversed(events))[:20]
    return render(
        request,
        "model.html",
        session,
        title=view.model_id,
        nav="models",
        view=view,
        cfg=cfg,
        as_of=as_of_text,
        resolved_from=model_id if model_id != view.model_id else None,
        endpoint=masked(cfg.endpoint) if cfg.endpoint else None,
        credentials=credential_refs(cfg.credentials),
        provider_credentials=credential_refs(
            provider_config.credentials if provider_config else None
        ),
        provider_endpoint=masked(provider_config.endpoint)
        if provider_config and provider_config.endpoint
        else None,
        provider_settings=masked(provider_config.settings) if provider_config else {},
        parameters=masked(cfg.parameters or {}),
        config_json=orjson.dumps(
            masked(wire), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode(),
        metrics=metrics,
        versions=[
            {
                "v": v,
                "metrics": v.metrics.model_dump(by_alias=True, exclude_none=True)
                if v.metrics
                else {},
            }
            for v in reversed(versions)
        ],
        history=list(reversed(history)),
        tests=sorted(tests, key=lambda t: (not t.running, -t.started_at.timestamp())),
        recent=[{"e": e, "what": summary(e)} for e in recent],
    )


# --------------------------------------------------------------------------- A/B tests


@router.get("/ab-tests")
async def ab_tests_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    try:
        reader = await _services(request).reader(session.principal)
        tests = await reader.list_ab_tests()
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    tests.sort(key=lambda t: (not t.running, -t.started_at.timestamp(), t.test_id))
    return render(request, "ab_tests.html", session, title="A/B tests", nav="ab", tests=tests)


def _report(monitor: Path, test_id: str) -> tuple[ComparisonReport | None, str | None]:
    try:
        report = build_report(monitor, test_id)
    except (TestNotFound, FileNotFoundError) as exc:
        return None, str(exc)
    except sqlite3.Error as exc:
        return None, f"the monitor database could not be read: {exc}"
    if report.test_id != test_id:  # resolved by model id to another test: not this one
        return None, "the monitor has no figures for this test yet."
    return report, None


async def _test(request: Request, session: Session, test_id: str) -> ABTestView | None:
    reader = await _services(request).reader(session.principal)
    for t in await reader.list_ab_tests():
        if t.test_id == test_id:
            return t
    return None


def _guard_state(
    entries: Sequence[AuditEntry], test: ABTestView
) -> tuple[dict[str, Any] | None, AuditEntry | None]:
    """The test's guardrails (from its start event) and the guard's last action on it."""
    guardrails: dict[str, Any] | None = None
    last: AuditEntry | None = None
    for entry in entries:
        ev = entry.event
        if ev is None or entry.applied is False:
            continue
        payload = getattr(ev, "payload", None)
        if ev.type == "ABTestStarted" and getattr(payload, "test_id", None) == test.test_id:
            rails = getattr(payload, "guardrails", None)
            guardrails = (
                rails.model_dump(mode="json", by_alias=True, exclude_none=True) if rails else None
            )
        if (
            ev.type in GUARD_EVENTS
            and ev.actor == GUARD_ACTOR
            and entry.occurred_at >= test.started_at
            and (
                ev.type == "ChallengerPromoted" or getattr(payload, "test_id", None) == test.test_id
            )
        ):
            last = entry
    return guardrails, last


@router.get("/ab-tests/{test_id:path}/plot.png")
async def ab_plot(request: Request, test_id: str) -> Response:
    """The report's plot (the same drawing as ``ab report --plot``), behind the session."""
    session = _session(request)
    if session is None:
        return Response(status_code=401)
    monitor = _services(request).monitor_path

    def draw() -> bytes | None:
        report, _ = _report(monitor, test_id)
        if report is None:
            return None
        try:
            from consumers.monitor.plot import plot_report
        except ImportError:
            return None
        with tempfile.TemporaryDirectory() as tmp, _PLOT_LOCK:
            out = Path(tmp) / "plot.png"
            try:
                plot_report(monitor, report, out)
            except ImportError:  # matplotlib is an extra
                return None
            return out.read_bytes()

    png = await asyncio.to_thread(draw)
    if png is None:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/ab-tests/{test_id:path}")
async def ab_test_page(request: Request, test_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    services = _services(request)
    try:
        test = await _test(request, session, test_id)
        if test is None:
            return _not_found(request, session, f"No A/B test '{test_id}'.")
        reader = await services.reader(session.principal)
        challenger = await reader.get_model(test.challenger_model_id)
        entries = await reader.model_events(test.challenger_model_id)
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    report, report_error = await asyncio.to_thread(_report, services.monitor_path, test_id)
    started_rails, last_action = _guard_state(entries, test)
    guardrails = (
        challenger.guardrails
        if challenger is not None and challenger.ab_test_id == test.test_id
        else started_rails
    )
    guard_now = None
    if guardrails and report is not None and test.running:
        guard_now = evaluate(report, thresholds_of(guardrails, report))
    mode = (
        challenger.ab_mode
        if challenger is not None and challenger.ab_test_id == test.test_id
        else (report.mode if report is not None else None)
    ) or "split"
    return render(
        request,
        "ab_test.html",
        session,
        title=f"A/B test {test.test_id}",
        nav="ab",
        test=test,
        mode=mode,
        report=report,
        report_error=report_error,
        guardrails=guardrails,
        guard_now=guard_now,
        last_action=last_action,
        last_action_text=summary(last_action) if last_action else None,
        challenger=challenger,
        plot_url=f"{_base(request)}/ab-tests/{quote(test.test_id, safe=':@')}/plot.png",
        actions=session.may_deploy and test.running,
    )


async def _action_form(
    request: Request, test_id: str
) -> tuple[Session | None, dict[str, str], Response | None]:
    """The session and form of an action POST, or the response refusing it."""
    session = _session(request)
    if session is None:
        return None, {}, _to_login(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        return (
            session,
            form,
            _forbidden(request, session, "Refused: the form's CSRF token is missing or wrong."),
        )
    if not session.may_deploy:
        return (
            session,
            form,
            _forbidden(request, session, "Refused: changing an A/B test needs the deployer role."),
        )
    return session, form, None


async def _act(request: Request, test_id: str, action: str) -> Response:
    session, form, refusal = await _action_form(request, test_id)
    if refusal is not None:
        return refusal
    assert session is not None
    services = _services(request)
    back = f"{_base(request)}/ab-tests/{quote(test_id, safe=':@')}"
    try:
        test = await _test(request, session, test_id)
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    if test is None:
        return _not_found(request, session, f"No A/B test '{test_id}'.")
    reason = form.get("reason", "").strip()[:500] or None
    response = _redirect(back)
    try:
        client = await services.client(session.principal)
        done = await _send(services, client, test, action, form, reason)
    except ValueError as exc:  # a form value out of range: nothing was sent
        _set_flash(request, response, "error", str(exc))
        return response
    except Rejected as exc:
        _set_flash(request, response, "error", f"Rejected ({exc.code}): {exc.rejection.message}")
        return response
    except PermissionError:
        return _forbidden(request, session, "Refused: anonymous visitors cannot write.")
    except RegistryError as exc:  # a timeout, a secret refused before sending...
        _set_flash(request, response, "error", f"{type(exc).__name__}: {exc}")
        return response
    _set_flash(request, response, "ok", done)
    return response


async def _send(
    services: ApiServices,
    client: CommandClient,
    test: ABTestView,
    action: str,
    form: Mapping[str, str],
    reason: str | None,
) -> str:
    """Send the action's command; what to tell the user on success.

    Raises:
        ValueError: a form value is out of range (nothing sent).
        Rejected: the decider refused the command.
    """
    challenger = test.challenger_model_id
    if action == "traffic":
        try:
            pct = float(form.get("traffic", ""))
        except ValueError:
            pct = math.nan
        if not math.isfinite(pct) or not 0 <= pct <= 100:
            raise ValueError("Traffic must be a number from 0 to 100.")
        result = await client.change_traffic(challenger, pct, reason=reason)
        done = f"Traffic set to {pct:g}%"
    elif action == "promote":
        report = await asyncio.to_thread(running_report, services.monitor_path, challenger)
        evidence = evidence_of(report) if report is not None else None
        result = await client.promote(challenger, reason=reason, evidence=evidence)
        done = f"{challenger} promoted over {test.champion_model_id}"
    else:
        result = await client.stop_ab_test(challenger, reason=reason)
        done = f"A/B test {test.test_id} stopped"
    return f"{done} (revision {result.revision})."


@router.post("/ab-tests/{test_id:path}/traffic")
async def ab_traffic(request: Request, test_id: str) -> Response:
    return await _act(request, test_id, "traffic")


@router.post("/ab-tests/{test_id:path}/promote")
async def ab_promote(request: Request, test_id: str) -> Response:
    return await _act(request, test_id, "promote")


@router.post("/ab-tests/{test_id:path}/stop")
async def ab_stop(request: Request, test_id: str) -> Response:
    return await _act(request, test_id, "stop")


# --------------------------------------------------------------------------- audit


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def audit_rows(
    db_path: Path,
    *,
    model_id: str | None,
    event_type: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEntry], bool, list[str]]:
    """The projection's audit entries matching the filters, newest first (read-only).

    Returns the page, whether older entries follow, and the actors seen in the log."""
    where: list[str] = []
    params: list[Any] = []
    if model_id:
        where.append(
            "(model_id = ? OR (model_id = ? AND type = 'RegistryCleared' AND EXISTS "
            "(SELECT 1 FROM json_each(value, '$.payload.modelIds') j WHERE j.value = ?)))"
        )
        params += [model_id, REGISTRY_KEY, model_id]
    if event_type:
        where.append("type = ?")
        params.append(event_type)
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if since:
        where.append("occurred_at >= ?")
        params.append(iso(since))
    if until:
        where.append("occurred_at <= ?")
        params.append(iso(until))
    sql = "SELECT partition, offset, timestamp_ms, applied, value FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY occurred_at DESC, partition DESC, offset DESC LIMIT ? OFFSET ?"
    params += [limit + 1, offset]
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
    except sqlite3.OperationalError as exc:
        raise ProjectionUnavailable(f"no projection at {db_path}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        try:
            rows = conn.execute(sql, tuple(params)).fetchall()
            actors = [
                str(a) for (a,) in conn.execute("SELECT DISTINCT actor FROM events ORDER BY actor")
            ]
        except sqlite3.OperationalError as exc:
            raise ProjectionUnavailable(f"{db_path} holds no projection (yet): {exc}") from exc
    finally:
        conn.close()
    return [entry_from_row(r) for r in rows[:limit]], len(rows) > limit, actors


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    q = request.query_params
    model_id = (q.get("model") or "").strip()[:200] or None
    event_type = _choice(q.get("type"), EVENT_TYPES)
    actor = (q.get("actor") or "").strip()[:200] or None
    since_text = (q.get("since") or "").strip()[:64]
    until_text = (q.get("until") or "").strip()[:64]
    page = _page_number(q.get("page"))
    try:
        since, until = _parse_time(since_text), _parse_time(until_text)
    except ValueError:
        return render(
            request,
            "error.html",
            session,
            status_code=400,
            title="Bad request",
            message="since and until must be ISO-8601 times, e.g. 2026-11-01T00:00:00Z.",
        )
    services = _services(request)
    try:
        await services.reader(session.principal)  # read-your-writes before reading the file
        entries, more, actors = await asyncio.to_thread(
            audit_rows,
            services.projection_path,
            model_id=model_id,
            event_type=event_type,
            actor=actor,
            since=since,
            until=until,
            limit=AUDIT_PAGE_SIZE,
            offset=(page - 1) * AUDIT_PAGE_SIZE,
        )
    except ProjectionUnavailable as exc:
        return _unavailable(request, session, exc)
    filters = {
        k: v
        for k, v in (
            ("model", model_id),
            ("type", event_type),
            ("actor", actor),
            ("since", since_text),
            ("until", until_text),
        )
        if v
    }
    return render(
        request,
        "audit.html",
        session,
        title="Audit log",
        nav="audit",
        rows=[
            {
                "e": e,
                "what": summary(e),
                "signed_by": e.event.signed_by if e.event else None,
                "revision": e.event.revision if e.event else None,
            }
            for e in entries
        ],
        page=page,
        more=more,
        filters=filters,
        query_for=lambda p: urlencode({**filters, "page": p}),
        event_types=EVENT_TYPES,
        actors=actors,
    )
