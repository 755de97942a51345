"""The registry's errors: one root, a subclass per failure mode, each with a stable ``code``.

::

    RegistryError
     ├── Rejected                 a command refused by the rules (carries a Rejection)
     ├── SecretInConfig           a raw secret where only a reference is allowed
     ├── DecodeError              bytes that are not a readable command/event
     ├── RevisionGap              an event out of its model's sequence (stray writer, lost event)
     ├── CommandTimeout           no reply from the decider in time
     └── BrokerUnavailable        the Kafka cluster could not be reached

Callers branch on the class or on ``code``, never on the message text. Messages never
contain secret values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "BrokerUnavailable",
    "CommandTimeout",
    "DecodeError",
    "RegistryError",
    "Rejected",
    "Rejection",
    "RejectionCode",
    "RevisionGap",
    "SecretInConfig",
    "describe_validation_error",
    "mask_segment",
]


_PLAIN_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# The most distinctive secret formats (registry.core.secrets has the full list): a key of
# such a shape is never printed.
_SECRET_SHAPED = re.compile(r"sk-|AKIA|ASIA|AIza|eyJ|gh[pousr]_|xox[abposr]-|hf_|-----BEGIN")


def mask_segment(segment: object) -> str:
    """A field-path segment fit to print: itself when it is a plain name, else ``*``."""
    text = str(segment)
    if isinstance(segment, int) and not isinstance(segment, bool):
        return text
    if _PLAIN_SEGMENT.match(text) and not _SECRET_SHAPED.search(text):
        return text
    return "*"


class RejectionCode(StrEnum):
    """Stable codes of command rejections."""

    INVALID_COMMAND = "InvalidCommand"
    INVALID_TRANSITION = "InvalidTransition"
    VERSION_CONFLICT = "VersionConflict"
    VERSION_REGRESSION = "VersionRegression"
    MAJOR_VERSION_MISMATCH = "MajorVersionMismatch"
    MODEL_NOT_FOUND = "ModelNotFound"
    MODEL_ALREADY_REGISTERED = "ModelAlreadyRegistered"
    MODEL_UNREGISTERED = "ModelUnregistered"
    SECRET_IN_CONFIG = "SecretInConfig"
    AB_TEST_INVALID = "ABTestInvalid"
    AB_TEST_CONFLICT = "ABTestConflict"
    AB_TEST_NOT_RUNNING = "ABTestNotRunning"
    AB_TEST_RUNNING = "ABTestRunning"
    ALIAS_INVALID = "AliasInvalid"
    NOTHING_TO_ROLL_BACK = "NothingToRollBack"
    CLEAR_NOT_ALLOWED = "ClearNotAllowed"
    UNAUTHENTICATED = "Unauthenticated"
    FORBIDDEN = "Forbidden"
    OVER_LIMIT = "OverLimit"


@dataclass(frozen=True, slots=True)
class Rejection:
    """The outcome of a refused command: a stable code and a message a person can act on."""

    code: RejectionCode
    message: str
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class RegistryError(Exception):
    """Root of every error the registry raises."""

    code: str = "RegistryError"


class Rejected(RegistryError):
    """A command was refused; ``rejection`` says why."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.code}: {rejection.message}")
        self.rejection = rejection
        self.code = str(rejection.code)


class SecretInConfig(RegistryError):
    """A raw secret was given where only a reference (``env:NAME``, ``file:/path``) is allowed.

    The message names the field and never repeats the value.
    """

    code = "SecretInConfig"

    def __init__(self, field: str) -> None:
        super().__init__(
            f"{field} holds a raw secret; secrets never enter the event log. "
            "Give a reference instead: 'env:VARIABLE_NAME' or 'file:/run/secrets/name'."
        )
        self.field = field
        self.message_id: str | None = None  # the command's id, when the codec could read it


class DecodeError(RegistryError):
    """Bytes that could not be read as a command or event; ``reason`` says why."""

    code = "DecodeError"

    def __init__(self, reason: str, *, message_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id


class RevisionGap(RegistryError):
    """An event is not the next in its model's sequence (a stray writer or a lost event)."""

    code = "RevisionGap"

    def __init__(self, model_id: str, expected: int, got: int) -> None:
        super().__init__(f"model '{model_id}': expected revision {expected}, got {got}")
        self.model_id, self.expected, self.got = model_id, expected, got


class CommandTimeout(RegistryError):
    """The decider did not answer in time; the command may still be applied later."""

    code = "CommandTimeout"


class BrokerUnavailable(RegistryError):
    """The Kafka cluster could not be reached."""

    code = "BrokerUnavailable"


def describe_validation_error(exc: Any) -> tuple[str, str | None]:
    """Turn a pydantic ``ValidationError`` into (message, first field) without input values.

    Pydantic's own ``str()`` quotes the offending input, which may be a secret; this does not.
    """
    parts: list[str] = []
    first: str | None = None
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(mask_segment(p) for p in err.get("loc", ()) if p != "__root__")
        first = first or loc or None
        parts.append(f"{loc or 'message'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid message", first
