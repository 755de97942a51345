"""The gate: what a command record must pass before the rules see it (docs/security.md).

``Gate.verify`` checks the record's signature over its exact bytes against the operator's
actors file (re-read when it changes); ``Gate.refusal`` checks that the signer may act for
the command's actor, that the actor's roles allow the command, four eyes when on, and that
any code the command's config names is granted. Pure checks over what the decider holds;
the decider turns their answers into replies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from registry.core.auth import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    Actor,
    Actors,
    authorize,
    command_digest,
    four_eyes,
    signature_valid,
)
from registry.core.errors import Rejection, RejectionCode
from registry.core.messages import COMMANDS, CommandBase
from registry.core.types import MODEL_ID_PATTERN
from registry.infra.grants import CALLABLES_GROUP, CODE_SETTINGS, callable_granted
from registry.infra.identity import ActorsFile
from registry.infra.settings import Settings

__all__ = ["About", "Gate", "Signed", "about", "about_bytes", "id_of", "id_of_bytes"]


@dataclass(frozen=True, slots=True)
class Signed:
    """A command record whose signature checked out."""

    signer: Actor
    signature: str
    digest: str


class Gate:
    """Authentication and authorization of commands, per the operator's files and settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.actors = ActorsFile(settings.actors_file)
        self.four_eyes = settings.auth.four_eyes
        self._current: Actors | None = None

    def refresh(self) -> Actors:
        """Re-read the actors file if it changed (once per batch: not a stat per record).

        Raises ``IdentityError`` when there never was a readable file."""
        self._current = self.actors.current()
        return self._current

    @property
    def current(self) -> Actors:
        """The actors as of the last ``refresh``."""
        return self._current if self._current is not None else self.refresh()

    def verify(self, record: ConsumerRecord[bytes, bytes]) -> Signed | Rejection:
        """The record's signer, when its signature over the exact value bytes checks out."""
        signer_name = signature = None
        for key, raw in record.headers or ():
            if key == SIGNER_HEADER:
                signer_name = raw.decode("utf-8", "replace")
            elif key == SIGNATURE_HEADER:
                signature = raw.decode("ascii", "replace")
        if not signer_name or not signature:
            return Rejection(
                RejectionCode.UNAUTHENTICATED,
                "unsigned command: every command carries 'signer' and 'signature' headers "
                "(docs/security.md#actors)",
            )
        actor = self.current.get(signer_name)
        digest = command_digest(record.value or b"")
        if actor is None or not signature_valid(actor, digest, signature):
            # One message for both: the reply does not tell which actor names exist.
            return Rejection(
                RejectionCode.UNAUTHENTICATED,
                "the signature does not verify against the actors file",
            )
        return Signed(actor, signature, digest)

    def refusal(self, command: CommandBase, signed: Signed, author: str | None) -> Rejection | None:
        """Why the signer may not send ``command`` (roles, four eyes against ``author``, who
        registered or released the model's current version; code not granted)."""
        refused = authorize(command, signed.signer, self.current)
        if refused is None and self.four_eyes:
            refused = four_eyes(command, author)
        return refused or self._code_not_granted(command)

    def _code_not_granted(self, command: CommandBase) -> Rejection | None:
        """A config naming code the operator did not grant is refused here already (the
        prediction consumer would refuse to load it)."""
        payload = getattr(command, "payload", None)
        changes = getattr(payload, "changes", None)
        pc = getattr(changes if changes is not None else payload, "provider_config", None)
        if pc is None:
            return None
        for name in CODE_SETTINGS:
            target = pc.settings.get(name)
            if isinstance(target, str) and not callable_granted(target, self.settings.grants):
                return Rejection(
                    RejectionCode.FORBIDDEN,
                    f"providerConfig.{name} names code the operator has not granted: install it "
                    f"as an entry point of '{CALLABLES_GROUP}' or list it in "
                    "REGISTRY_GRANTS_CALLABLES (docs/security.md)",
                    f"providerConfig.{name}",
                )
        return None


def id_of(obj: Any) -> str | None:
    """The ``id`` of a decoded message, when it is one a reply can be keyed by."""
    if isinstance(obj, dict):
        command_id = obj.get("id")
        if isinstance(command_id, str) and 0 < len(command_id) <= 128:
            return command_id
    return None


_MODEL_ID = re.compile(MODEL_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class About:
    """What a refused record says about itself, as far as it is readable: its ``id`` (the
    reply's key), its ``type`` when it names a known command, its ``model_id`` when it is a
    valid model id. Nothing else of an unbelieved record is echoed."""

    id: str | None = None
    type: str | None = None
    model_id: str | None = None


def about(obj: Any) -> About:
    """The readable ``About`` of a decoded (or partly decodable) command object."""
    if not isinstance(obj, dict):
        return About()
    type_name = obj.get("type")
    model_id = obj.get("model_id")
    return About(
        id_of(obj),
        type_name if isinstance(type_name, str) and type_name in COMMANDS else None,
        model_id if isinstance(model_id, str) and _MODEL_ID.match(model_id) else None,
    )


def about_bytes(value: bytes | None) -> About:
    """``about`` of a record's value (an empty ``About`` for anything unreadable)."""
    if not value:
        return About()
    try:
        return about(orjson.loads(value))
    except (orjson.JSONDecodeError, RecursionError):
        return About()


def id_of_bytes(value: bytes | None) -> str | None:
    """The readable ``id`` of a record's value (``None`` for anything unreadable)."""
    if not value:
        return None
    try:
        return id_of(orjson.loads(value))
    except (orjson.JSONDecodeError, RecursionError):
        return None
