"""What the API's routes and the console's pages share (``request.app.state.services``).

This is the contract between ``model_registry/api/app.py`` (the JSON API) and
``model_registry/api/console.py`` (the pages). Both take everything from here and nothing
from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from projections.reader import ProjectionReader
from registry.decider.client import CommandClient
from registry.infra.settings import Settings

__all__ = ["ApiServices", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: an actor of the actors file (by its bearer token), or anonymous."""

    actor: str | None
    """None: anonymous (allowed only when the operator turns anonymous reads on)."""
    roles: frozenset[str]
    """The actor's roles in the actors file (``author``, ``deployer``, ``admin``)."""
    token_id: str | None = None
    """The token's public id (never the token itself)."""
    read_only: bool = False
    """A read-only token (``api token create --read-only``): every write is refused (403)."""

    @property
    def anonymous(self) -> bool:
        return self.actor is None

    @property
    def may_write(self) -> bool:
        """Whether this principal may send commands at all (the decider still checks roles)."""
        return not self.anonymous and not self.read_only

    def may(self, role: str) -> bool:
        """Whether the actors file gives this principal ``role`` (and it may write at all)."""
        return self.may_write and ("admin" in self.roles or role in self.roles)


class ApiServices(Protocol):
    """The shared services (implemented in ``model_registry/api/app.py``)."""

    settings: Settings
    projection_path: Path
    monitor_path: Path

    async def reader(self, principal: Principal | None = None) -> ProjectionReader:
        """The projection, after it has applied ``principal``'s own writes
        (read-your-writes)."""
        ...

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of a bearer token; anonymous when no token and anonymous reads are
        on; ``None`` when refused."""
        ...

    async def client(self, principal: Principal) -> CommandClient:
        """A started command client (kept per actor, closed with the app) that signs with the
        service's gateway key in ``principal.actor``'s name. Its writes are remembered, so
        ``reader(principal)`` waits for them. Raises ``PermissionError`` for anonymous."""
        ...
