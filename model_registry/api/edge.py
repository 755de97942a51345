"""Bounds at the HTTP edge: body size and JSON depth, before anything is decoded.

A pure ASGI middleware (no per-request task or copy for requests without a body): a body
over ``max_bytes`` is refused with 413 (by its ``Content-Length`` before it is read, or once
the bytes read pass the bound), a JSON body nested deeper than ``max_depth`` with 422
(``registry/core/limits.py``); both as problem+json, never quoting the body.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_registry.api.problems import ApiProblem, problem_response
from registry.core.limits import json_depth

__all__ = ["BodyLimits"]

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        problem = self._declared_too_large(scope)
        body = b""
        if problem is None:
            body, problem = await self._read(receive)
        if (
            problem is None
            and _is_json(scope)
            and json_depth(body, self.max_depth) > self.max_depth
        ):
            problem = ApiProblem(
                422,
                "OverLimit",
                f"the JSON body is nested deeper than the limit of {self.max_depth} levels",
            )
        if problem is not None:
            await problem_response(problem)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> ApiProblem:
        return ApiProblem(
            413,
            "OverLimit",
            f"the request body of {size} bytes is over the limit of {self.max_bytes} bytes",
        )

    def _declared_too_large(self, scope: Scope) -> ApiProblem | None:
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return ApiProblem(400, "InvalidRequest", "Content-Length is not a number")
                return self._too_large(size) if size > self.max_bytes else None
        return None

    async def _read(self, receive: Receive) -> tuple[bytes, ApiProblem | None]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return b"", ApiProblem(400, "InvalidRequest", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return b"json" in value.lower()
    return False
