"""A live HTTP API for tests: an in-process stack, uvicorn on a free loopback port, tokens.

``live_api(settings, components)`` starts the stack's ``components`` on the test broker,
serves the API on 127.0.0.1:0 and yields a ``LiveApi`` with tokens for: ``admin`` (the
test's own identity, admin), ``alice`` (an author only), and a read-only token of the admin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from model_registry.api.server import ApiServer
from model_registry.api.tokens import TokenStore
from model_registry.stack import Stack
from registry.infra.identity import create_identity, load_identity
from registry.infra.settings import GrantSettings, Settings

__all__ = ["CALLABLE", "LiveApi", "config", "live_api"]

CALLABLE = "tests.consumers.custom_models"


def config(
    model_id: str, version: str = "1.0.0", status: str = "testing", rule: str = "score"
) -> dict[str, Any]:
    """A ``custom`` model (camelCase, as a caller sends it)."""
    return {
        "id": model_id,
        "name": "Lead scoring",
        "version": version,
        "type": "classification",
        "provider": "custom",
        "status": status,
        "providerConfig": {"provider": "custom", "callable": f"{CALLABLE}:{rule}"},
    }


@dataclass
class LiveApi:
    settings: Settings
    url: str
    admin: str
    alice: str
    read_only: str
    admin_actor: str

    def client(self, token: str | None = None, **headers: str) -> httpx.AsyncClient:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def _add_actor(settings: Settings, name: str, roles: list[str]) -> None:
    identity = create_identity(settings.data_dir / f"{name}.identity.json", name)
    doc: dict[str, Any] = orjson.loads(settings.actors_file.read_bytes())
    doc["actors"].append({"name": name, "public_key": identity.public_key, "roles": roles})
    settings.actors_file.write_bytes(orjson.dumps(doc))


@contextlib.asynccontextmanager
async def live_api(
    settings: Settings, components: tuple[str, ...] = ("decider", "projector")
) -> AsyncIterator[LiveApi]:
    settings = settings.with_(
        grants=GrantSettings(callables=(f"{CALLABLE}:score", f"{CALLABLE}:score_v2"))
    )
    _add_actor(settings, "alice", ["author"])
    admin_actor = load_identity(settings.identity_file).actor
    tokens = TokenStore(settings.api_tokens_file)
    _, admin = tokens.create(admin_actor)
    _, alice = tokens.create("alice")
    _, read_only = tokens.create(admin_actor, read_only=True)
    stack = Stack(settings, components=components)
    await stack.start()
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        assert await stack.wait_ready(60) == []
        server = ApiServer(stack.settings, host="127.0.0.1", port=0, fallback=False)
        task = asyncio.create_task(server.run(stop))
        await asyncio.wait_for(server.ready.wait(), 30)
        yield LiveApi(stack.settings, server.url, admin, alice, read_only, admin_actor)
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await stack.stop()
