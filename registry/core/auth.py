"""Who sent a command, and whether they may (docs/security.md#actors).

Every command record carries, in its Kafka headers, ``signer`` (an actor's name) and
``signature``: Ed25519 by that actor's key over ``SIGNING_CONTEXT + sha256(value)``, the
exact bytes of the record's value. The decider checks it against the operator's actors
file (name, public key, roles, whom it may sign for) before it reads anything else, then
checks that the signer may act for the command's ``actor`` and that the actor's roles allow
the command. The event records the actor, the signer, the signature and the digest, so
``audit verify`` can check every signature again, long after.

Roles (an actor holds any of them; ``admin`` holds all):

- ``author``: register, release, record metrics, update configs, move a model between
  ``training`` and ``testing``;
- ``deployer``: activate, deprecate, unregister; start, change and stop A/B tests; promote,
  roll back, assign and remove aliases;
- ``admin``: all of the above, and ``ClearRegistry``.

With four eyes on, the actor who registered or released a version cannot activate it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.core.errors import Rejection, RejectionCode
from registry.core.messages import (
    ChangeStatus,
    ClearRegistry,
    CommandBase,
    RecordMetrics,
    RegisterModel,
    ReleaseVersion,
    UpdateConfig,
)
from registry.core.types import Status

__all__ = [
    "ANYONE",
    "SIGNATURE_HEADER",
    "SIGNER_HEADER",
    "SIGNING_CONTEXT",
    "Actor",
    "Actors",
    "Role",
    "activates",
    "authorize",
    "command_digest",
    "four_eyes",
    "public_key_text",
    "required_roles",
    "sign",
    "signature_valid",
    "valid_actor_name",
]

SIGNING_CONTEXT = b"model-registry command v1\n"
"""Prefix of every signed message (so a command signature can never pass for another)."""
SIGNER_HEADER = "signer"
SIGNATURE_HEADER = "signature"
ANYONE = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")


class Role(StrEnum):
    AUTHOR = "author"
    DEPLOYER = "deployer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Actor:
    """One entry of the actors file."""

    name: str
    public_key: Ed25519PublicKey
    roles: frozenset[Role]
    signs_for: frozenset[str] = frozenset()
    """Actors this one may sign for (a gateway): names, or ``*`` for anyone."""

    def may_sign_for(self, actor: str) -> bool:
        return actor == self.name or ANYONE in self.signs_for or actor in self.signs_for

    def holds(self, role: Role) -> bool:
        return Role.ADMIN in self.roles or role in self.roles


class Actors:
    """The operator's actors, by name. ``Actors.parse(obj)`` reads the file's JSON."""

    def __init__(self, actors: Iterable[Actor]) -> None:
        self.by_name: dict[str, Actor] = {a.name: a for a in actors}

    def get(self, name: str) -> Actor | None:
        return self.by_name.get(name)

    def __len__(self) -> int:
        return len(self.by_name)

    @classmethod
    def parse(cls, obj: Any) -> Actors:
        """``{"actors": [{"name", "public_key", "roles", "signs_for"?}, ...]}``.

        Raises:
            ValueError: the file's shape is wrong (the message says where).
        """
        if not isinstance(obj, Mapping) or not isinstance(obj.get("actors"), list):
            raise ValueError('the actors file must be an object with a list "actors"')
        out = []
        for i, entry in enumerate(obj["actors"]):
            where = f"actors[{i}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where} must be an object")
            name = entry.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"{where}.name must be a name (letters, digits, ._@-)")
            key = entry.get("public_key")
            try:
                public = Ed25519PublicKey.from_public_bytes(_b64(key))
            except (TypeError, ValueError, binascii.Error):
                raise ValueError(
                    f"{where}.public_key must be a base64 Ed25519 public key"
                ) from None
            roles = entry.get("roles", [])
            if not isinstance(roles, list) or not all(r in Role._value2member_map_ for r in roles):
                raise ValueError(f"{where}.roles must be a list of {', '.join(Role)}")
            signs_for = entry.get("signs_for", [])
            if not isinstance(signs_for, list) or not all(isinstance(s, str) for s in signs_for):
                raise ValueError(f"{where}.signs_for must be a list of actor names (or '*')")
            out.append(Actor(name, public, frozenset(Role(r) for r in roles), frozenset(signs_for)))
        return cls(out)


def valid_actor_name(name: str) -> bool:
    """Is ``name`` fit to be an actor's name (letters, digits, ``._@-``; 1-200 long)?"""
    return _NAME.match(name) is not None


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The base64 of a raw Ed25519 public key (as the actors file holds it)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def command_digest(value: bytes) -> str:
    """The hex SHA-256 of a command's bytes (recorded in its events)."""
    return hashlib.sha256(value).hexdigest()


def _message(digest_hex: str) -> bytes:
    return SIGNING_CONTEXT + bytes.fromhex(digest_hex)


def sign(key: Ed25519PrivateKey, value: bytes) -> str:
    """The base64 signature of ``value`` (a command's exact bytes) by ``key``."""
    return base64.b64encode(key.sign(_message(command_digest(value)))).decode()


def signature_valid(actor: Actor, digest_hex: str, signature: str) -> bool:
    """Does ``signature`` (base64) by ``actor`` cover the command whose digest is given?"""
    try:
        actor.public_key.verify(_b64(signature), _message(digest_hex))
    except (InvalidSignature, TypeError, ValueError, binascii.Error):
        return False
    return True


_AUTHOR_STATUSES = frozenset({Status.TRAINING, Status.TESTING})


def required_roles(command: CommandBase) -> frozenset[Role]:
    """The roles ``command`` needs (all of them)."""
    if isinstance(command, ClearRegistry):
        return frozenset({Role.ADMIN})
    status: Status | None = None
    if isinstance(command, RegisterModel | ReleaseVersion):
        status = command.payload.status
    elif isinstance(command, ChangeStatus):
        if command.payload.status in _AUTHOR_STATUSES:
            return frozenset({Role.AUTHOR})
        return frozenset({Role.DEPLOYER})
    elif not isinstance(command, RecordMetrics | UpdateConfig):
        return frozenset({Role.DEPLOYER})  # A/B tests, UnregisterModel
    if status is None or status in _AUTHOR_STATUSES:
        return frozenset({Role.AUTHOR})
    return frozenset({Role.AUTHOR, Role.DEPLOYER})


def authorize(command: CommandBase, signer: Actor, actors: Actors) -> Rejection | None:
    """May ``signer`` send ``command`` (in its own name or, as a gateway, in its actor's)?

    A gateway's command needs the roles of the gateway and, when the actor is in the
    actors file too, the actor's."""
    if not signer.may_sign_for(command.actor):
        return Rejection(
            RejectionCode.FORBIDDEN,
            f"'{signer.name}' may not sign for another actor; the actors file must list the "
            f"actor in its signs_for",
            "actor",
        )
    needed = required_roles(command)
    holders = [signer]
    named = actors.get(command.actor)
    if named is not None and named is not signer:
        holders.append(named)
    for holder in holders:
        missing = sorted(r for r in needed if not holder.holds(r))
        if missing:
            return Rejection(
                RejectionCode.FORBIDDEN,
                f"{command.type} needs the role {' and '.join(missing)}, "
                f"which '{holder.name}' does not hold",
            )
    return None


def activates(command: CommandBase) -> bool:
    """Does ``command`` make a version active?"""
    if isinstance(command, ChangeStatus):
        return command.payload.status is Status.ACTIVE
    if isinstance(command, RegisterModel | ReleaseVersion):
        return command.payload.status is Status.ACTIVE
    return False


def four_eyes(command: CommandBase, author: str | None) -> Rejection | None:
    """With four eyes on: refuse an activation by the actor who registered or released the
    version (``author``: who did, as the log says; a command that registers or releases
    and activates at once is its own author)."""
    if not activates(command):
        return None
    own = isinstance(command, RegisterModel | ReleaseVersion) or author == command.actor
    if own:
        return Rejection(
            RejectionCode.FORBIDDEN,
            "four eyes: a version is activated by an actor other than the one who "
            "registered or released it",
            "actor",
        )
    return None
