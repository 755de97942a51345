"""Credential references, resolved only at call time, and the redaction of what they reveal.

A model's ``credentials`` hold references (``env:NAME``, ``file:/path``), never values
(docs/design.md#secrets). A reference resolves only within the operator's grants (variables
with a granted prefix, files under the granted secrets directory:
docs/security-providers.md). A provider resolves a reference just before a call; the value lives in
a ``Secret`` whose ``repr``/``str`` never show it. Every value a ``Secret`` has revealed is
remembered (in this process only) so that ``redact`` can scrub it from any text that is about
to leave a provider: an error message, a vendor's error body, a log line.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson

from consumers.errors import CredentialUnavailable
from registry.core.types import is_secret_reference
from registry.infra.settings import GrantSettings

__all__ = ["Secret", "redact", "redact_bytes", "resolve_reference"]

_REDACTED = "***"
_MIN_LEN = 8  # shorter values would redact ordinary words (real keys are far longer)
_revealed: set[str] = set()
_revealed_bytes: tuple[bytes, ...] = ()  # the same values, UTF-8 and JSON-escaped, for redact_bytes
_lock = threading.Lock()


class Secret:
    """A resolved credential. ``reveal()`` hands the value to the code that sends it."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        """The value; it is remembered so that ``redact`` can scrub it from any text."""
        if len(self._value) >= _MIN_LEN and self._value not in _revealed:
            _remember(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, '{_REDACTED}')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:  # never pickle a value into a cache or a log
        raise TypeError("a Secret cannot be pickled")


def _remember(value: str) -> None:
    global _revealed_bytes
    with _lock:
        _revealed.add(value)
        forms = {v.encode() for v in _revealed} | {orjson.dumps(v)[1:-1] for v in _revealed}
        _revealed_bytes = tuple(sorted(forms, key=len, reverse=True))


NOT_GRANTED = (
    "is not granted by the operator (REGISTRY_GRANTS_ENV_PREFIXES, REGISTRY_GRANTS_SECRETS_DIR)"
)
UNAVAILABLE = "is granted but has no value (unset, empty or unreadable)"


def resolve_reference(field: str, reference: str, grants: GrantSettings | None = None) -> Secret:
    """Resolve ``env:NAME`` or ``file:/path`` within ``grants`` (``field`` names it in errors,
    never the value).

    ``env:NAME`` resolves only when NAME starts with one of ``grants.env_prefixes``;
    ``file:/path`` only when the path, links resolved, lies under ``grants.secrets_dir``. A
    refusal says only one of two things, the same whatever exists: the reference is not
    granted, or it is granted but has no value (an unset variable, a missing, unreadable or
    empty file alike). Nothing outside the grants is looked at.

    Raises:
        CredentialUnavailable: not a reference, not granted, or granted without a value.
    """
    grants = grants or GrantSettings()
    if not is_secret_reference(reference):
        raise CredentialUnavailable(f"{field} is not a reference ('env:NAME' or 'file:/path')")
    kind, _, target = reference.partition(":")
    if kind == "env":
        if not any(p and target.startswith(p) for p in grants.env_prefixes):
            raise CredentialUnavailable(f"{field}: {reference} {NOT_GRANTED}")
        value = os.environ.get(target, "").strip()
    else:
        path = _granted_file(target, grants.secrets_dir)
        if path is None:
            raise CredentialUnavailable(f"{field}: {reference} {NOT_GRANTED}")
        value = _read_secret_file(path)
    if not value:
        raise CredentialUnavailable(f"{field}: {reference} {UNAVAILABLE}")
    return Secret(field, value)


def _granted_file(target: str, secrets_dir: Path | None) -> str | None:
    """The real path of ``target`` when it lies under ``secrets_dir``, else None.

    The lexical check comes first (nothing outside the directory is touched); then links are
    resolved and the real path must still lie under the real directory.
    """
    if secrets_dir is None or "\0" in target or not os.path.isabs(target):
        return None
    if ".." in Path(target).parts:
        return None
    base = os.path.abspath(secrets_dir)
    lexical = os.path.normpath(target)
    if not _under(lexical, base) and not _under(lexical, os.path.realpath(base)):
        return None
    real = os.path.realpath(lexical)
    return real if _under(real, os.path.realpath(base)) else None


def _under(path: str, base: str) -> bool:
    return path != base and os.path.commonpath([path, base]) == base


def _read_secret_file(path: str) -> str:
    """The stripped text of ``path`` ("" when it cannot be read: the caller says no more)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(64 * 1024)
        return data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return ""


def redact_bytes(data: bytes) -> bytes:
    """``data`` (e.g. an encoded result) with every revealed value replaced by ``***``.

    Costs nothing until a secret has been revealed in this process.
    """
    for value in _revealed_bytes:
        if value in data:
            data = data.replace(value, b"***")
    return data


def redact(text: str) -> str:
    """``text`` with every value any ``Secret`` has revealed replaced by ``***``."""
    with _lock:
        known = sorted(_revealed, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, _REDACTED)
    return text
