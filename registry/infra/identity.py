"""Signing keys and the actors file, on disk (docs/security.md#actors).

An *identity* file (0600) holds one actor's name and Ed25519 private key: what a client
(the CLI, ``ModelRegistry``, a service) signs its commands with. The *actors* file is the
operator's list the decider verifies against: each actor's name, public key, roles, and
whom it may sign for. ``ensure_local`` gives the embedded default both, once: a key for the
local user and an actors file naming that user admin.

The decider re-reads the actors file when it changes (``ActorsFile.current``), so adding
or removing an actor needs no restart.
"""

from __future__ import annotations

import base64
import getpass
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from registry.core.auth import SIGNATURE_HEADER, SIGNER_HEADER, Actors, Role, public_key_text, sign
from registry.core.errors import RegistryError
from registry.infra.files import write_private
from registry.infra.settings import Settings

__all__ = [
    "ActorsFile",
    "Identity",
    "IdentityError",
    "create_identity",
    "ensure_local",
    "load_identity",
    "API_ACTOR",
    "MONITOR_ACTOR",
    "api_entry",
    "ensure_api",
    "ensure_monitor",
    "monitor_entry",
    "write_actors",
]

log = logging.getLogger(__name__)


class IdentityError(RegistryError):
    """No usable identity or actors file; the message says which file and what to do."""

    code = "IdentityError"


@dataclass(frozen=True)
class Identity:
    """An actor and its private key: signs command bytes."""

    actor: str
    key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"Identity({self.actor!r})"

    @property
    def public_key(self) -> str:
        return public_key_text(self.key)

    def headers(self, value: bytes) -> list[tuple[str, bytes]]:
        """The signature headers of a command whose bytes are ``value``."""
        return [
            (SIGNER_HEADER, self.actor.encode()),
            (SIGNATURE_HEADER, sign(self.key, value).encode()),
        ]


def _raw(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def create_identity(path: Path, actor: str) -> Identity:
    """A new key for ``actor``, written to ``path`` (0600)."""
    key = Ed25519PrivateKey.generate()
    body = {"actor": actor, "private_key": _raw(key), "public_key": public_key_text(key)}
    write_private(path, orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return Identity(actor, key)


def load_identity(path: Path) -> Identity:
    """The identity in ``path``. Raises ``IdentityError`` saying what to do."""
    try:
        obj = orjson.loads(path.read_bytes())
        key = Ed25519PrivateKey.from_private_bytes(
            base64.b64decode(obj["private_key"], validate=True)
        )
        actor = obj["actor"]
        if not isinstance(actor, str) or not actor:
            raise ValueError("no actor")
    except FileNotFoundError:
        raise IdentityError(
            f"no signing identity at {path}: run `model-registry up` once (it creates one for "
            "the local user), or point REGISTRY_AUTH_IDENTITY_FILE at the key your operator "
            "gave you"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise IdentityError(
            f"the signing identity at {path} cannot be read (expected JSON with 'actor' and "
            "'private_key'); create a new one with `model-registry identity create`"
        ) from None
    return Identity(actor, key)


def write_actors(path: Path, entries: list[dict[str, object]]) -> None:
    """Write an actors file (0600)."""
    Actors.parse({"actors": entries})  # refuse to write what the decider could not read
    write_private(path, orjson.dumps({"actors": entries}, option=orjson.OPT_INDENT_2))


class ActorsFile:
    """The operator's actors, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._actors: Actors | None = None

    def current(self) -> Actors:
        """The actors as the file says now. Raises ``IdentityError`` when there is no
        readable file at all; a broken edit keeps the last good version (and logs why)."""
        try:
            st = self.path.stat()
        except OSError:
            if self._actors is not None:
                log.error("actors file %s is gone; keeping the last version read", self.path)
                return self._actors
            raise IdentityError(
                f"no actors file at {self.path}: the decider verifies every command against "
                "it. `model-registry up` creates one naming the local user admin; see "
                "docs/security.md to write one"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp or self._actors is None:
            try:
                actors = Actors.parse(orjson.loads(self.path.read_bytes()))
            except (OSError, ValueError, orjson.JSONDecodeError) as exc:
                if self._actors is None:
                    raise IdentityError(f"the actors file {self.path} is invalid: {exc}") from None
                log.error(
                    "actors file %s is invalid (%s); keeping the last version", self.path, exc
                )
                return self._actors
            self._actors, self._stamp = actors, stamp
        return self._actors


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")


def _local_user() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without /etc/passwd entry)
        name = "local"
    return _SAFE_NAME.sub("-", name)[:100] or "local"


MONITOR_ACTOR = "monitor"
"""The guard's actor: it stops, throttles or promotes tests whose guardrails say so."""


def ensure_monitor(settings: Settings) -> Identity:
    """The guard's identity (actor ``monitor``), created when missing."""
    path = settings.monitor_identity_file
    if path.exists():
        return load_identity(path)
    identity = create_identity(path, MONITOR_ACTOR)
    log.info("created the guard's signing identity '%s' at %s", MONITOR_ACTOR, path)
    return identity


API_ACTOR = "api"
"""The HTTP API's gateway actor: it signs commands in the authenticated caller's name."""


def ensure_api(settings: Settings) -> Identity:
    """The HTTP API's gateway identity (actor ``api``), created when missing."""
    path = settings.api_identity_file
    if path.exists():
        return load_identity(path)
    identity = create_identity(path, API_ACTOR)
    log.info("created the HTTP API's signing identity '%s' at %s", API_ACTOR, path)
    return identity


def api_entry(api: Identity) -> dict[str, object]:
    """The actors-file entry of the HTTP API: a gateway that may sign for anyone, with the
    roles ``author`` and ``deployer`` (the decider also checks the named actor's own roles,
    so a caller never gets more than the actors file gives it)."""
    return {
        "name": api.actor,
        "public_key": api.public_key,
        "roles": [Role.AUTHOR.value, Role.DEPLOYER.value],
        "signs_for": ["*"],
    }


def ensure_local(settings: Settings) -> Identity:
    """The local identity, created with an actors file naming it admin (and the guard's
    ``monitor`` deployer, and the HTTP API's ``api`` gateway) when neither exists.

    An existing actors file is the operator's: it is never rewritten."""
    identity_path, actors_path = settings.identity_file, settings.actors_file
    if identity_path.exists():
        identity = load_identity(identity_path)
    else:
        identity = create_identity(identity_path, _local_user())
        log.info("created a signing identity for '%s' at %s", identity.actor, identity_path)
    monitor = ensure_monitor(settings)
    api = ensure_api(settings)
    if not actors_path.exists():
        write_actors(
            actors_path,
            [
                {
                    "name": identity.actor,
                    "public_key": identity.public_key,
                    "roles": [Role.ADMIN.value],
                },
                monitor_entry(monitor),
                api_entry(api),
            ],
        )
        log.info("created %s naming '%s' admin", actors_path, identity.actor)
    return identity


def monitor_entry(monitor: Identity) -> dict[str, object]:
    """The actors-file entry of the guard: a deployer (traffic, stop, promote), no more."""
    return {"name": monitor.actor, "public_key": monitor.public_key, "roles": [Role.DEPLOYER.value]}
