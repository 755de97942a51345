"""Errors as ``application/problem+json`` (RFC 9457): ``{type, title, status, detail, code,
field}``, with the registry's stable ``code`` (docs/api.md#status-codes).

A detail never quotes a request's values: a rejection's message is the decider's (which
never echoes secrets), a validation error names fields only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from registry.core.errors import Rejection, RejectionCode, describe_validation_error

__all__ = [
    "PROBLEM_JSON",
    "ApiProblem",
    "problem_response",
    "rejection_problem",
    "rejection_status",
    "validation_problem",
]

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    422: "Unprocessable request",
    500: "Internal error",
    501: "Not implemented",
    503: "Unavailable",
    504: "Timed out",
}

REJECTION_STATUS: Mapping[RejectionCode, int] = {
    RejectionCode.INVALID_COMMAND: 422,
    RejectionCode.INVALID_TRANSITION: 409,
    RejectionCode.VERSION_CONFLICT: 412,
    RejectionCode.VERSION_REGRESSION: 409,
    RejectionCode.MAJOR_VERSION_MISMATCH: 422,
    RejectionCode.MODEL_NOT_FOUND: 404,
    RejectionCode.MODEL_ALREADY_REGISTERED: 409,
    RejectionCode.MODEL_UNREGISTERED: 409,
    RejectionCode.SECRET_IN_CONFIG: 422,
    RejectionCode.AB_TEST_INVALID: 422,
    RejectionCode.AB_TEST_CONFLICT: 409,
    RejectionCode.AB_TEST_NOT_RUNNING: 409,
    RejectionCode.AB_TEST_RUNNING: 409,
    RejectionCode.ALIAS_INVALID: 422,
    RejectionCode.NOTHING_TO_ROLL_BACK: 409,
    RejectionCode.CLEAR_NOT_ALLOWED: 403,
    RejectionCode.UNAUTHENTICATED: 401,
    RejectionCode.FORBIDDEN: 403,
    RejectionCode.OVER_LIMIT: 413,
}
"""The HTTP status of each rejection code (the table in docs/api.md)."""


def rejection_status(code: RejectionCode) -> int:
    return REJECTION_STATUS.get(code, 409)


class ApiProblem(Exception):
    """Raised by a route: answered as a problem+json response."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "type": f"urn:model-registry:problem:{self.code}",
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "field": self.field,
        }


def problem_response(problem: ApiProblem) -> Response:
    return Response(
        orjson.dumps(problem.body()),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def rejection_problem(rejection: Rejection) -> ApiProblem:
    """The problem of a command the decider (or the client) refused."""
    return ApiProblem(
        rejection_status(rejection.code), str(rejection.code), rejection.message, rejection.field
    )


def validation_problem(exc: Any) -> ApiProblem:
    """The problem of a request pydantic refused: fields named, values never quoted."""
    errors: list[Any] = list(exc.errors())
    for err in errors:  # FastAPI prefixes where the value came from: body, query, path...
        if isinstance(err, dict) and err.get("loc"):
            err["loc"] = tuple(err["loc"])[1:] if err["loc"][0] in _SOURCES else err["loc"]

    class _Errors:
        def errors(self, **_: Any) -> list[Any]:
            return errors

    detail, field = describe_validation_error(_Errors())
    return ApiProblem(422, "InvalidRequest", detail, field)


_SOURCES = ("body", "query", "path", "header", "cookie")
