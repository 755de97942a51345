"""Credential references, resolved only at call time, and the redaction of what they reveal.

A model's ``credentials`` hold references (``env:NAME``, ``file:/path``), never values
(docs/design.md#secrets). A provider resolves a reference just before a call; the value lives in
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


def resolve_reference(field: str, reference: str) -> Secret:
    """Resolve ``env:NAME`` or ``file:/path`` (``field`` names it in errors, never the value).

    Raises:
        CredentialUnavailable: not a reference, the variable is unset or empty, or the file
            cannot be read.
    """
    if not is_secret_reference(reference):
        raise CredentialUnavailable(f"{field} is not a reference ('env:NAME' or 'file:/path')")
    kind, _, target = reference.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if not value:
            raise CredentialUnavailable(f"{field}: environment variable {target} is not set")
        return Secret(field, value)
    try:
        value = Path(target).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialUnavailable(
            f"{field}: cannot read {target} ({exc.strerror or type(exc).__name__})"
        ) from None
    if not value:
        raise CredentialUnavailable(f"{field}: {target} is empty")
    return Secret(field, value)


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
