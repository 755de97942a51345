"""``create_app(settings)``: the HTTP API (FastAPI) over the projection, the monitor and the
command topic (docs/api.md).

Reads come from the projection (``ProjectionReader``) and the monitor's database; writes
become signed commands, sent by this service as the gateway ``api`` in the authenticated
actor's name, with the CLI's guarantees: the command id from ``Idempotency-Key``, the
expected revision from ``If-Match``, rejections as problem+json with their code, the events'
offsets on success, and read-your-writes for the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import re
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from consumers.monitor.errors import TestNotFound
from consumers.monitor.report import build_report
from model_registry.api import wire
from model_registry.api.edge import BodyLimits
from model_registry.api.gateway import Gateway, PredictionTimeout
from model_registry.api.problems import (
    ApiProblem,
    problem_response,
    rejection_problem,
    validation_problem,
)
from model_registry.api.services import ApiServices, Principal
from model_registry.evidence import evidence_of, running_report
from projections.audit import entry_from_row
from projections.errors import ProjectionLagError, ProjectionUnavailable
from projections.views import ABTestView, ModelView, StatusChange, VersionView
from registry.core.errors import (
    BrokerUnavailable,
    CommandTimeout,
    Rejected,
    SecretInConfig,
    describe_validation_error,
)
from registry.core.messages import (
    EVENTS,
    REGISTRY_KEY,
    AliasPayload,
    AssignAlias,
    ChangeABTraffic,
    ChangeABTrafficPayload,
    ChangeStatus,
    ChangeStatusPayload,
    CommandBase,
    ConfigChanges,
    Evidence,
    PromoteChallenger,
    PromotePayload,
    ReasonPayload,
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
    UpdateConfig,
    UpdateConfigPayload,
)
from registry.core.predictions import PredictionRequest
from registry.core.secrets import find_secret
from registry.core.state import iso
from registry.core.types import ModelConfig, ModelType, Provider, Status
from registry.infra.settings import Settings

__all__ = ["API_TITLE", "create_app"]

log = logging.getLogger(__name__)

API_TITLE = "model-registry"
API_VERSION = "1"
MAX_PAGE = 500
MAX_AUDIT = 10_000
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:~+/=-]{1,200}$")
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,15})"?$')

bearer = HTTPBearer(auto_error=False, description="A token from `model-registry api token create`")


class Json(JSONResponse):
    """JSON by orjson (NaN and infinities become null)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


# --------------------------------------------------------------------------- auth


def services_of(request: Request) -> ApiServices:
    """The shared services (``app.state.services``), for routes and console pages alike."""
    services: ApiServices = request.app.state.services
    return services


async def read_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Who is calling: a token's actor, or anonymous when the operator allows reads so."""
    presented = request.headers.get("authorization")
    if presented is not None and credentials is None:
        raise _unauthenticated("the Authorization header must be 'Bearer <token>'")
    principal = services_of(request).authenticate(
        credentials.credentials if credentials is not None else None
    )
    if principal is None:
        if credentials is None:
            raise _unauthenticated("this endpoint needs a bearer token")
        raise _unauthenticated(
            "the bearer token is not valid (unknown, revoked, or its actor left)"
        )
    request.state.principal = principal
    return principal


async def write_principal(
    request: Request, principal: Annotated[Principal, Depends(read_principal)]
) -> Principal:
    """A principal that may write, and a body that holds no raw secret."""
    if principal.anonymous:
        raise _unauthenticated("writes need a bearer token")
    if principal.read_only:
        raise ApiProblem(403, "Forbidden", "this token is read-only")
    body = await request.body()
    if body:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            decoded = None  # the body's own validation says what is wrong
        secret = find_secret(decoded) if decoded is not None else None
        if secret is not None:
            raise ApiProblem(422, "SecretInConfig", str(SecretInConfig(secret)), secret)
    return principal


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, "Unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


Reader = Annotated[Principal, Depends(read_principal)]
Writer = Annotated[Principal, Depends(write_principal)]


# --------------------------------------------------------------------------- views as JSON


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def version_json(v: VersionView) -> dict[str, Any]:
    return {
        "modelId": v.model_id,
        "version": v.version,
        "releasedStatus": str(v.released_status),
        "config": v.config.wire(),
        "metrics": v.metrics.wire() if v.metrics is not None else None,
        "releasedAt": v.released_at.isoformat(),
        "releasedBy": v.released_by,
        "releasedRevision": v.released_revision,
        "partition": v.partition,
        "offset": v.offset,
        "supersededAt": _iso(v.superseded_at),
    }


def status_json(c: StatusChange) -> dict[str, Any]:
    return {
        "modelId": c.model_id,
        "revision": c.revision,
        "fromStatus": str(c.from_status) if c.from_status is not None else None,
        "toStatus": str(c.to_status),
        "changedAt": c.changed_at.isoformat(),
        "actor": c.actor,
        "reason": c.reason,
        "eventType": c.event_type,
        "eventId": c.event_id,
        "partition": c.partition,
        "offset": c.offset,
    }


def abtest_json(t: ABTestView) -> dict[str, Any]:
    return {
        "testId": t.test_id,
        "challengerModelId": t.challenger_model_id,
        "championModelId": t.champion_model_id,
        "routing": t.routing,
        "trafficPercentage": t.traffic_percentage,
        "splitVersion": t.split_version,
        "status": t.status,
        "running": t.running,
        "startedAt": t.started_at.isoformat(),
        "startedBy": t.started_by,
        "stoppedAt": _iso(t.stopped_at),
        "stoppedBy": t.stopped_by,
        "stopReason": t.stop_reason,
        "splits": [
            {
                "splitVersion": s.split_version,
                "trafficPercentage": s.traffic_percentage,
                "previousPercentage": s.previous_percentage,
                "changedAt": s.changed_at.isoformat(),
                "actor": s.actor,
                "offset": s.offset,
            }
            for s in t.splits
        ],
    }


def parse_as_of(text: str | None) -> datetime | int | None:
    """``as_of``: an offset (digits) or an ISO-8601 time (naive = UTC)."""
    if text is None or text == "":
        return None
    if text.isdigit():
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiProblem(
            422,
            "InvalidRequest",
            "as_of is neither an offset nor an ISO-8601 time (e.g. 2026-11-01T00:00:00Z)",
            "as_of",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _time(text: str | None, name: str) -> datetime | None:
    value = parse_as_of(text) if text else None
    if isinstance(value, int):
        raise ApiProblem(422, "InvalidRequest", f"{name} must be an ISO-8601 time", name)
    return value


# --------------------------------------------------------------------------- writes


def command_id(request: Request, principal: Principal) -> str:
    """The command id: derived from ``Idempotency-Key`` (per actor) when given, else new."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return str(uuid.uuid4())
    if not _IDEMPOTENCY_KEY.match(key):
        raise ApiProblem(
            400,
            "InvalidIdempotencyKey",
            "Idempotency-Key must be 1-200 characters of letters, digits and ._:~+/=-",
            "Idempotency-Key",
        )
    digest = hashlib.sha256(f"{principal.actor}\n{key}".encode()).hexdigest()
    return f"idem-{digest[:40]}"


def expected_revision(request: Request) -> int | None:
    """``If-Match: "<revision>"`` (``*`` or absent: any revision)."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    match = _IF_MATCH.match(value.strip())
    if match is None:
        raise ApiProblem(
            400, "InvalidIfMatch", 'If-Match must be a revision: "<revision>"', "If-Match"
        )
    return int(match[1])


Build = Callable[[dict[str, Any]], CommandBase]


async def send_command(request: Request, principal: Principal, build: Build) -> Response:
    """Send the command ``build(envelope)`` makes; answer its outcome, or a problem."""
    services = services_of(request)
    envelope = {
        "id": command_id(request, principal),
        "actor": principal.actor,
        "expected_revision": expected_revision(request),
    }
    try:
        command = build(envelope)
    except pydantic.ValidationError as exc:
        detail, field = describe_validation_error(exc)
        raise ApiProblem(422, "InvalidCommand", detail, field) from None
    try:
        client = await services.client(principal)
        result = await client.send(command)
    except Rejected as exc:
        raise rejection_problem(exc.rejection) from None
    except SecretInConfig as exc:
        raise ApiProblem(422, "SecretInConfig", str(exc), exc.field) from None
    except CommandTimeout as exc:
        raise ApiProblem(504, "CommandTimeout", str(exc)) from None
    except BrokerUnavailable as exc:
        raise ApiProblem(503, "BrokerUnavailable", str(exc)) from None
    body = {
        "commandId": result.command_id,
        "modelId": result.model_id,
        "outcome": result.outcome,
        "revision": result.revision,
        "events": [e.model_dump() for e in result.events],
    }
    headers = {} if result.revision is None else {"ETag": f'"{result.revision}"'}
    return Json(body, headers=headers)


# --------------------------------------------------------------------------- the app


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": wire.Problem, "description": "a problem"} for code in codes}


READ_ERRORS = _problems(401, 404, 422, 503, 504)
WRITE_ERRORS = _problems(400, 401, 403, 404, 409, 412, 413, 422, 503, 504)


def create_app(settings: Settings, *, services: ApiServices | None = None) -> FastAPI:
    """The API (and, when ``model_registry.api.console`` exists, the console under
    ``/console``). ``services``: shared services to use (default: a ``Gateway`` on
    ``settings``, closed with the app)."""
    owned = services is None
    shared: ApiServices = services if services is not None else Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            close = getattr(shared, "close", None)
            if owned and close is not None:
                await close()

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        summary="Event-sourced AI model registry: models, versions, A/B tests, audit, predictions.",
        lifespan=lifespan,
        default_response_class=Json,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = shared
    app.state.settings = settings
    _handlers(app)
    _read_routes(app)
    _write_routes(app)
    _predict_route(app)
    _mount_console(app)
    app.add_middleware(
        BodyLimits, max_bytes=settings.api.max_body_bytes, max_depth=settings.limits.json_depth
    )
    app.openapi = _openapi_with_problems(app)  # type: ignore[method-assign]
    return app


def _handlers(app: FastAPI) -> None:
    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        return problem_response(validation_problem(exc))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HttpError")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return problem_response(ApiProblem(exc.status_code, code, detail))

    async def unavailable(request: Request, exc: Exception) -> Response:
        return problem_response(ApiProblem(503, "ProjectionUnavailable", str(exc)))

    async def lag(request: Request, exc: Exception) -> Response:
        return problem_response(ApiProblem(504, "ProjectionLag", str(exc)))

    app.add_exception_handler(ApiProblem, problem)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(ProjectionUnavailable, unavailable)
    app.add_exception_handler(ProjectionLagError, lag)


async def _model(request: Request, principal: Principal, ref: str) -> ModelView:
    reader = await services_of(request).reader(principal)
    view = await reader.get_model(ref)
    if view is None:
        raise ApiProblem(404, "ModelNotFound", f"no model or alias '{_safe(ref)}'", "id")
    return view


def _safe(text: str) -> str:
    """An id fit to quote (ids and aliases have a plain shape; anything else is not echoed)."""
    return text if re.fullmatch(r"[A-Za-z0-9._@-]{1,200}", text) else "(not a valid id)"


ModelRef = Annotated[str, PathParam(min_length=1, max_length=256, description="id or alias")]


def _read_routes(app: FastAPI) -> None:  # noqa: C901 - one route per endpoint
    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        console = any(getattr(r, "path", "").startswith("/console") for r in app.routes)
        return RedirectResponse("/console/" if console else "/docs")

    @app.get("/health", response_model=wire.HealthOut, tags=["health"])
    @app.get("/healthz", include_in_schema=False)  # the name the other components' checks use
    async def health(request: Request) -> Response:
        """Liveness, with whether the projection and the monitor's database can be read. No
        authentication."""
        services = services_of(request)
        projection = "ok"
        try:
            await (await services.reader()).positions()
        except (ProjectionUnavailable, sqlite3.Error):
            projection = "unavailable"
        monitor = "ok" if services.monitor_path.exists() else "unavailable"
        return Json({"status": "ok", "projection": projection, "monitor": monitor})

    @app.get("/models", response_model=wire.ModelPage, responses=READ_ERRORS, tags=["models"])
    async def list_models(
        request: Request,
        principal: Reader,
        type: ModelType | None = None,  # noqa: A002 - the spec's filter name
        status: Status | None = None,
        provider: Provider | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        cursor: Annotated[str | None, Query(max_length=300)] = None,
    ) -> Response:
        """Models by id, filtered; a page of ``limit`` from ``offset``, or after ``cursor``
        (the ``nextCursor`` of the previous page)."""
        reader = await services_of(request).reader(principal)
        views = await reader.list_models(type=type, status=status, provider=provider)
        start = offset
        if cursor:
            after = _cursor_id(cursor)
            start = next((i for i, v in enumerate(views) if v.model_id > after), len(views))
        page = views[start : start + limit]
        more = start + limit < len(views)
        return Json(
            {
                "items": [v.to_dict() for v in page],
                "total": len(views),
                "limit": limit,
                "offset": start,
                "nextCursor": _cursor(page[-1].model_id) if more and page else None,
            }
        )

    @app.get(
        "/models/{model_id}", response_model=wire.ModelOut, responses=READ_ERRORS, tags=["models"]
    )
    async def get_model(
        request: Request,
        principal: Reader,
        model_id: ModelRef,
        as_of: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """One model by id or alias; ``as_of``: as it was at a time (ISO-8601) or an offset of
        its partition. ``ETag`` is its revision (give it back in ``If-Match``)."""
        reader = await services_of(request).reader(principal)
        view = await reader.get_model(model_id, as_of=parse_as_of(as_of))
        if view is None:
            raise ApiProblem(404, "ModelNotFound", f"no model or alias '{_safe(model_id)}'", "id")
        return Json(view.to_dict(), headers={"ETag": f'"{view.revision}"'})

    @app.get(
        "/models/{model_id}/versions",
        response_model=list[wire.VersionOut],
        responses=READ_ERRORS,
        tags=["models"],
    )
    async def versions(request: Request, principal: Reader, model_id: ModelRef) -> Response:
        """Every version the model's id has carried, oldest first."""
        view = await _model(request, principal, model_id)
        reader = await services_of(request).reader(principal)
        return Json([version_json(v) for v in await reader.list_versions(view.model_id)])

    @app.get(
        "/models/{model_id}/history",
        response_model=list[wire.StatusChangeOut],
        responses=READ_ERRORS,
        tags=["models"],
    )
    async def history(request: Request, principal: Reader, model_id: ModelRef) -> Response:
        """Every status transition of the model, in log order."""
        view = await _model(request, principal, model_id)
        reader = await services_of(request).reader(principal)
        return Json([status_json(c) for c in await reader.status_history(view.model_id)])

    @app.get(
        "/aliases", response_model=list[wire.AliasOut], responses=READ_ERRORS, tags=["aliases"]
    )
    async def aliases(request: Request, principal: Reader) -> Response:
        """Every alias and the model it names."""
        reader = await services_of(request).reader(principal)
        return Json(
            [
                {"alias": a, "modelId": m, "version": v, "status": s}
                for a, m, v, s in await reader.list_aliases()
            ]
        )

    @app.get("/ab-tests", response_model=wire.ABTestPage, responses=READ_ERRORS, tags=["ab-tests"])
    async def ab_tests(
        request: Request,
        principal: Reader,
        model: Annotated[str | None, Query(max_length=256)] = None,
        running: bool | None = None,
    ) -> Response:
        """A/B tests (of ``model`` as champion or challenger), with their split versions."""
        reader = await services_of(request).reader(principal)
        tests = await reader.list_ab_tests(model, running=running)
        return Json({"items": [abtest_json(t) for t in tests]})

    @app.get(
        "/ab-tests/{ref}/report",
        response_model=dict[str, Any],
        responses=READ_ERRORS,
        tags=["ab-tests"],
    )
    async def report(request: Request, principal: Reader, ref: ModelRef) -> Response:
        """The monitor's comparison report (as ``ab report --json``) of the test ``ref`` names:
        a test id, or the running (else latest) test of a champion or challenger."""
        rep = await _report(request, ref)
        return Json(rep.to_dict())

    @app.get(
        "/ab-tests/{ref}/plot.png",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the plot"},
            **_problems(401, 404, 422, 501, 503),
        },
        tags=["ab-tests"],
    )
    async def plot(request: Request, principal: Reader, ref: ModelRef) -> Response:
        """Latency and quality of each variant over time (as ``ab report --plot``)."""
        if importlib.util.find_spec("matplotlib") is None:
            raise ApiProblem(
                501,
                "PlotUnavailable",
                "the plot needs matplotlib: install the sklearn extra "
                "(pip install 'model-registry[sklearn]')",
            )
        rep = await _report(request, ref)
        png = await asyncio.to_thread(_draw, services_of(request).monitor_path, rep)
        return Response(png, media_type="image/png")

    @app.get(
        "/audit",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                "description": "one JSON object per line: partition, offset, timestamp, applied, "
                "event",
            },
            **_problems(401, 422, 503),
        },
        tags=["audit"],
    )
    async def audit(
        request: Request,
        principal: Reader,
        model: Annotated[str | None, Query(max_length=256)] = None,
        type: Annotated[list[str] | None, Query()] = None,  # noqa: A002 - the CLI's name
        actor: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        until: Annotated[str | None, Query(max_length=64)] = None,
        from_offset: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        to_offset: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT)] = 1000,
    ) -> Response:
        """The log's events as JSON lines, with ``audit replay``'s filters, from the
        projection's copy of the log (``applied``: folded in, or refused)."""
        unknown = [t for t in type or () if t not in EVENTS]
        if unknown:
            raise ApiProblem(
                422, "InvalidRequest", f"type must be one of {', '.join(sorted(EVENTS))}", "type"
            )
        flt = _AuditQuery(
            model,
            tuple(type or ()),
            actor,
            _time(since, "since"),
            _time(until, "until"),
            from_offset,
            to_offset,
            limit,
        )
        services = services_of(request)
        await services.reader(principal)  # read-your-writes
        lines = await asyncio.to_thread(_audit_lines, services.projection_path, flt)
        return StreamingResponse(_chunks(lines), media_type="application/x-ndjson")


async def _chunks(lines: list[bytes]) -> AsyncIterator[bytes]:
    for start in range(0, len(lines), 200):
        yield b"".join(lines[start : start + 200])


def _cursor(model_id: str) -> str:
    return model_id.encode().hex()


def _cursor_id(cursor: str) -> str:
    try:
        return bytes.fromhex(cursor).decode()
    except ValueError:
        raise ApiProblem(
            422, "InvalidRequest", "cursor is not one this API gave", "cursor"
        ) from None


async def _report(request: Request, ref: str) -> Any:
    path = services_of(request).monitor_path
    try:
        return await asyncio.to_thread(build_report, path, ref)
    except TestNotFound:
        raise ApiProblem(
            404, "ABTestNotFound", f"no A/B test matches '{_safe(ref)}'", "ref"
        ) from None
    except FileNotFoundError:
        raise ApiProblem(503, "MonitorUnavailable", "the monitor has no database yet") from None


def _draw(monitor: Path, report: Any) -> bytes:
    from consumers.monitor.plot import plot_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plot.png"
        plot_report(monitor, report, out)
        return out.read_bytes()


class _AuditQuery:
    def __init__(
        self,
        model: str | None,
        types: tuple[str, ...],
        actor: str | None,
        since: datetime | None,
        until: datetime | None,
        from_offset: int | None,
        to_offset: int | None,
        limit: int,
    ) -> None:
        self.model, self.types, self.actor = model, types, actor
        self.since, self.until = since, until
        self.from_offset, self.to_offset, self.limit = from_offset, to_offset, limit

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if self.model is not None:
            where.append("model_id IN (?, ?)")
            params += [self.model, REGISTRY_KEY]
        if self.types:
            where.append(f"type IN ({', '.join('?' * len(self.types))})")
            params += list(self.types)
        if self.actor is not None:
            where.append("actor = ?")
            params.append(self.actor)
        if self.since is not None:
            where.append("occurred_at >= ?")
            params.append(iso(self.since.astimezone(UTC)))
        if self.until is not None:
            where.append("occurred_at <= ?")
            params.append(iso(self.until.astimezone(UTC)))
        if self.from_offset is not None:
            where.append("offset >= ?")
            params.append(self.from_offset)
        if self.to_offset is not None:
            where.append("offset <= ?")
            params.append(self.to_offset)
        sql = "SELECT partition, offset, timestamp_ms, applied, value FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + " ORDER BY partition, offset", params


def _audit_lines(db: Path, q: _AuditQuery) -> list[bytes]:
    if not db.exists():
        raise ProjectionUnavailable(f"no projection at {db}; start the projector")
    lines: list[bytes] = []
    sql, params = q.sql()
    with closing(sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True)) as conn:
        cursor = conn.execute(sql, params)
        while len(lines) < q.limit:
            rows = cursor.fetchmany(500)
            if not rows:
                break
            for row in rows:
                entry = entry_from_row(row)
                if q.model is not None and entry.model_id != q.model and not entry.names(q.model):
                    continue
                lines.append(orjson.dumps(entry.to_json()) + b"\n")
                if len(lines) >= q.limit:
                    break
    return lines


# --------------------------------------------------------------------------- write routes


def _write_routes(app: FastAPI) -> None:  # noqa: C901 - one route per endpoint
    @app.post("/models", tags=["models"], response_model=wire.WriteOut, responses=WRITE_ERRORS)
    async def register(request: Request, principal: Writer, config: ModelConfig) -> Response:
        """Register a model (the spec's ``ModelConfig``, camelCase); an identical
        re-registration is a no-op."""
        return await send_command(
            request,
            principal,
            lambda env: RegisterModel(model_id=config.id, payload=config, **env),
        )

    @app.post(
        "/models/{model_id}/status",
        tags=["models"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def change_status(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.StatusBody
    ) -> Response:
        """Move the model along its lifecycle."""
        payload = ChangeStatusPayload(status=body.status, reason=body.reason)
        return await send_command(
            request,
            principal,
            lambda env: ChangeStatus(model_id=model_id, payload=payload, **env),
        )

    @app.post(
        "/models/{model_id}/versions",
        tags=["models"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def release(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.ReleaseBody
    ) -> Response:
        """Release a higher version under the same id (same major)."""
        payload = ReleaseVersionPayload(
            version=body.version,
            status=body.status,
            metrics=body.metrics,
            changes=body.changes or ConfigChanges(),
        )
        return await send_command(
            request,
            principal,
            lambda env: ReleaseVersion(model_id=model_id, payload=payload, **env),
        )

    @app.post(
        "/models/{model_id}/metrics",
        tags=["models"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def metrics(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.MetricsBody
    ) -> Response:
        """Record evaluation metrics: merged into the current set (``replace``: the whole
        set)."""
        payload = RecordMetricsPayload(metrics=body.metrics, replace=True if body.replace else None)
        return await send_command(
            request,
            principal,
            lambda env: RecordMetrics(model_id=model_id, payload=payload, **env),
        )

    @app.patch(
        "/models/{model_id}", tags=["models"], response_model=wire.WriteOut, responses=WRITE_ERRORS
    )
    async def update(
        request: Request, principal: Writer, model_id: ModelRef, changes: ConfigChanges
    ) -> Response:
        """Change name, description, endpoint, credentials (references), providerConfig,
        parameters or lastTrained."""
        payload = UpdateConfigPayload(changes=changes)
        return await send_command(
            request,
            principal,
            lambda env: UpdateConfig(model_id=model_id, payload=payload, **env),
        )

    @app.post(
        "/models/{model_id}/unregister",
        tags=["models"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def unregister(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.ReasonBody
    ) -> Response:
        """Unregister a deprecated model; its history stays."""
        payload = ReasonPayload(reason=body.reason)
        return await send_command(
            request,
            principal,
            lambda env: UnregisterModel(model_id=model_id, payload=payload, **env),
        )

    @app.post(
        "/models/{model_id}/aliases",
        tags=["aliases"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def assign_alias(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.AliasBody
    ) -> Response:
        """Point the alias (``name@label``) at this model, an active one."""
        payload = AliasPayload(alias=body.alias)
        return await send_command(
            request,
            principal,
            lambda env: AssignAlias(model_id=model_id, payload=payload, **env),
        )

    @app.delete(
        "/aliases/{alias}", tags=["aliases"], response_model=wire.WriteOut, responses=WRITE_ERRORS
    )
    async def remove_alias(request: Request, principal: Writer, alias: ModelRef) -> Response:
        """Remove the alias from the model it names."""
        reader = await services_of(request).reader(principal)
        named = {a: m for a, m, _, _ in await reader.list_aliases()}.get(alias)
        if named is None:
            raise ApiProblem(404, "AliasNotFound", f"no alias '{_safe(alias)}'", "alias")
        payload = AliasPayload(alias=alias)
        return await send_command(
            request,
            principal,
            lambda env: RemoveAlias(model_id=named, payload=payload, **env),
        )

    _ab_write_routes(app)


def _ab_write_routes(app: FastAPI) -> None:
    @app.post("/ab-tests", tags=["ab-tests"], response_model=wire.WriteOut, responses=WRITE_ERRORS)
    async def start(request: Request, principal: Writer, body: wire.StartABTestBody) -> Response:
        """Start a champion/challenger test (``mode`` split or shadow, with guardrails)."""
        payload = StartABTestPayload(
            champion_model_id=body.champion_model_id,
            traffic_percentage=body.traffic_percentage,
            routing=body.routing,
            mode=body.mode,
            guardrails=body.guardrails,
        )
        return await send_command(
            request,
            principal,
            lambda env: StartABTest(model_id=body.challenger_model_id, payload=payload, **env),
        )

    @app.post(
        "/ab-tests/{challenger}/traffic",
        tags=["ab-tests"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def traffic(
        request: Request, principal: Writer, challenger: ModelRef, body: wire.TrafficBody
    ) -> Response:
        """Change the running test's split (a new split version)."""
        payload = ChangeABTrafficPayload(
            traffic_percentage=body.traffic_percentage, reason=body.reason
        )
        return await send_command(
            request,
            principal,
            lambda env: ChangeABTraffic(model_id=challenger, payload=payload, **env),
        )

    @app.post(
        "/ab-tests/{challenger}/stop",
        tags=["ab-tests"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def stop(
        request: Request, principal: Writer, challenger: ModelRef, body: wire.ReasonBody
    ) -> Response:
        """Stop the challenger's running test."""
        payload = ReasonPayload(reason=body.reason)
        return await send_command(
            request, principal, lambda env: StopABTest(model_id=challenger, payload=payload, **env)
        )

    @app.post(
        "/ab-tests/{challenger}/promote",
        tags=["ab-tests"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def promote(
        request: Request, principal: Writer, challenger: ModelRef, body: wire.PromoteBody
    ) -> Response:
        """Promote the challenger (one event), keeping the monitor's report as evidence."""
        evidence: Evidence | None = None
        if body.evidence:
            monitor = services_of(request).monitor_path
            rep = await asyncio.to_thread(running_report, monitor, challenger)
            if rep is not None:
                evidence = Evidence.model_validate(evidence_of(rep))
        payload = PromotePayload(reason=body.reason, evidence=evidence)
        return await send_command(
            request,
            principal,
            lambda env: PromoteChallenger(model_id=challenger, payload=payload, **env),
        )

    @app.post(
        "/ab-tests/{model_id}/rollback",
        tags=["ab-tests"],
        response_model=wire.WriteOut,
        responses=WRITE_ERRORS,
    )
    async def rollback(
        request: Request, principal: Writer, model_id: ModelRef, body: wire.ReasonBody
    ) -> Response:
        """Undo the promotion that made ``model_id`` the served model (one event)."""
        payload = ReasonPayload(reason=body.reason)
        return await send_command(
            request,
            principal,
            lambda env: RollbackPromotion(model_id=model_id, payload=payload, **env),
        )


def _predict_route(app: FastAPI) -> None:
    @app.post(
        "/predict",
        response_model=dict[str, Any],
        responses=_problems(400, 401, 403, 413, 422, 503, 504),
        tags=["predictions"],
    )
    async def predict(request: Request, principal: Writer, body: wire.PredictBody) -> Response:
        """Write a prediction request and wait for its result (the ``PredictionResult``);
        504 when none arrives in time."""
        services = services_of(request)
        try:
            prediction = PredictionRequest(
                id=f"api-{uuid.uuid4().hex}",
                model_id=body.model_id,
                unit_id=body.unit_id,
                input=body.input,
                correlation_id=body.correlation_id,
                explain=body.explain,
            )
        except pydantic.ValidationError as exc:
            detail, field = describe_validation_error(exc)
            raise ApiProblem(422, "InvalidRequest", detail, field) from None
        timeout = body.timeout_s or services.settings.api.predict_timeout_s
        predict_fn: Callable[..., Awaitable[Any]] | None = getattr(services, "predict", None)
        if predict_fn is None:
            raise ApiProblem(501, "NotImplemented", "these services do not predict")
        try:
            result = await predict_fn(prediction, timeout)
        except PredictionTimeout as exc:
            raise ApiProblem(504, "PredictionTimeout", str(exc)) from None
        except BrokerUnavailable as exc:
            raise ApiProblem(503, "BrokerUnavailable", str(exc)) from None
        return Json(result.model_dump(mode="json", exclude_none=True))


def _mount_console(app: FastAPI) -> None:
    try:
        from model_registry.api import console  # the web console, when it is there
    except ModuleNotFoundError as exc:
        if exc.name != "model_registry.api.console":
            raise
        return
    router = getattr(console, "router", None)
    if router is not None:
        app.include_router(router, prefix="/console", include_in_schema=False)


def _openapi_with_problems(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, with every error answered as ``application/problem+json``."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        problem = {"$ref": "#/components/schemas/Problem"}
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                for status, response in operation.get("responses", {}).items():
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = {"application/problem+json": {"schema": problem}}
                        if status == "422":
                            response["description"] = "the request is invalid (fields named)"
        schemas = doc.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    return openapi
