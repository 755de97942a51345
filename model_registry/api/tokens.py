"""The HTTP API's bearer tokens, kept hashed (docs/api.md#authentication).

A token is ``mrt_`` + 43 url-safe characters (32 random bytes). Only its SHA-256 is stored,
in ``<data_dir>/api-tokens.json`` (0600): ``{"tokens": [{id, actor, sha256, created_at,
read_only}]}``. ``id`` is public (``api token list``, ``revoke``); the token itself is shown
once, when it is created, and never again, nor logged. A presented token is hashed and
compared with every stored hash in constant time (``hmac.compare_digest``).

The file is re-read when it changes, so a token created or revoked by the CLI counts at once
for a running service.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from registry.core.errors import RegistryError
from registry.infra.files import write_private

__all__ = ["TOKEN_PREFIX", "StoredToken", "TokenError", "TokenStore", "hash_token"]

TOKEN_PREFIX = "mrt_"
_TOKEN = re.compile(r"^mrt_[A-Za-z0-9_-]{43}$")
_ID = re.compile(r"^[0-9a-f]{12}$")


class TokenError(RegistryError):
    """The tokens file cannot be read or written, or names no such token."""

    code = "TokenError"


@dataclass(frozen=True, slots=True)
class StoredToken:
    """One token as stored: never the token, only its hash."""

    id: str
    actor: str
    sha256: str
    created_at: str
    read_only: bool = False

    def public(self) -> dict[str, Any]:
        """What ``api token list`` shows (no hash)."""
        return {
            "id": self.id,
            "actor": self.actor,
            "created_at": self.created_at,
            "read_only": self.read_only,
        }


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class TokenStore:
    """The tokens file: create, list, revoke, and find the token a request presents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[StoredToken, ...] = ()

    def tokens(self) -> tuple[StoredToken, ...]:
        """Every stored token (re-read when the file changed; none when there is no file)."""
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._tokens = None, ()
            return ()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._tokens = self._read()
            self._stamp = stamp
        return self._tokens

    def _read(self) -> tuple[StoredToken, ...]:
        try:
            obj = orjson.loads(self.path.read_bytes())
            return tuple(
                StoredToken(
                    str(t["id"]),
                    str(t["actor"]),
                    str(t["sha256"]),
                    str(t["created_at"]),
                    bool(t.get("read_only", False)),
                )
                for t in obj["tokens"]
            )
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise TokenError(
                f"the API tokens file {self.path} cannot be read; fix or remove it (tokens are "
                "created with `model-registry api token create`)"
            ) from None

    def _write(self, tokens: tuple[StoredToken, ...]) -> None:
        body = {
            "tokens": [
                {
                    "id": t.id,
                    "actor": t.actor,
                    "sha256": t.sha256,
                    "created_at": t.created_at,
                    "read_only": t.read_only,
                }
                for t in tokens
            ]
        }
        write_private(self.path, orjson.dumps(body, option=orjson.OPT_INDENT_2))
        self._stamp = None

    def create(self, actor: str, *, read_only: bool = False) -> tuple[StoredToken, str]:
        """A new token for ``actor``: (what is stored, the token itself, to show once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        existing = self.tokens()
        ids = {t.id for t in existing}
        token_id = secrets.token_hex(6)
        while token_id in ids:  # pragma: no cover - 48 random bits
            token_id = secrets.token_hex(6)
        stored = StoredToken(
            token_id,
            actor,
            hash_token(token),
            datetime.now(UTC).isoformat(timespec="seconds"),
            read_only,
        )
        self._write((*existing, stored))
        return stored, token

    def revoke(self, token_id: str) -> StoredToken:
        """Remove the token ``token_id``. Raises ``TokenError`` when there is none."""
        existing = self.tokens()
        found = [t for t in existing if t.id == token_id] if _ID.match(token_id) else []
        if not found:
            raise TokenError(
                f"no API token with id {token_id!r} (see `model-registry api token list`)"
            )
        self._write(tuple(t for t in existing if t.id != token_id))
        return found[0]

    def find(self, token: str) -> StoredToken | None:
        """The stored token ``token`` is, or None. Compares with every stored hash in
        constant time; a token of the wrong shape is refused without a lookup."""
        if not _TOKEN.match(token):
            return None
        digest = hash_token(token).encode()
        match: StoredToken | None = None
        for stored in self.tokens():
            if hmac.compare_digest(digest, stored.sha256.encode()):
                match = stored
        return match
