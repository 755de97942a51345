"""Bytes <-> messages. JSON (UTF-8) via orjson, validated by pydantic-core.

``decode_event`` / ``decode_command`` raise ``DecodeError`` with a reason for anything
unreadable: malformed JSON, a non-object, an unknown ``type``, a failed validation. Old
``schema_version``\\ s are upcast on read by functions registered with ``upcaster``; the
stored bytes are never rewritten.

``decode_fact`` is what readers of the log fold with: the strict fast check
(``registry.core.fastcheck``) when it is sure, else ``decode_event`` and ``fact_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from registry.core.errors import DecodeError, SecretInConfig, describe_validation_error
from registry.core.fastcheck import check
from registry.core.messages import (
    COMMAND_ADAPTER,
    COMMANDS,
    EVENT_ADAPTER,
    EVENTS,
    CommandBase,
    CommandReply,
    EventBase,
)
from registry.core.state import Fact, fact_of
from registry.core.types import mask_segment

__all__ = [
    "CURRENT_SCHEMA_VERSIONS",
    "careful_fact",
    "check",
    "decode_command",
    "decode_event",
    "decode_fact",
    "decode_reply",
    "encode",
    "headers_for",
    "upcaster",
]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}
CURRENT_SCHEMA_VERSIONS: dict[str, int] = {
    name: cls.SCHEMA_VERSION for name, cls in (*COMMANDS.items(), *EVENTS.items())
}
_EVENT_NAMES = frozenset(EVENTS)
_COMMAND_NAMES = frozenset(COMMANDS)


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning a ``type_name`` message of ``from_version`` into the next.

    Example::

        @upcaster("ModelRegistered", 1)
        def _v1_to_v2(msg): msg["payload"]["owner"] = "unknown"; return msg
    """

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def encode(message: BaseModel) -> bytes:
    """The wire bytes of a command, event or reply (camelCase payloads, no null fields)."""
    return orjson.dumps(message.model_dump(mode="json", by_alias=True, exclude_none=True))


def headers_for(message: EventBase | CommandBase) -> list[tuple[str, bytes]]:
    """Kafka headers: ``type`` for cheap filtering without decoding the value."""
    return [("type", message.type.encode())]


def _load(data: bytes | str | None) -> dict[str, Any]:
    if data is None:
        raise DecodeError("empty message (null value)")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _quoted(name: object) -> str:
    """A message type fit to print back: a plain name, else only what kind of value it is."""
    if isinstance(name, str) and mask_segment(name) == name:
        return repr(name)
    return "(missing)" if name is None else f"(a {type(name).__name__} that is not a type name)"


def _upcast(obj: dict[str, Any]) -> dict[str, Any]:
    type_name = obj.get("type")
    version = obj.get("schema_version", 1)
    if not isinstance(type_name, str) or not isinstance(version, int):
        return obj
    target = CURRENT_SCHEMA_VERSIONS.get(type_name, version)
    while version < target:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise DecodeError(f"no upcaster for {type_name} schema_version {version}")
        obj = step(obj)
        version += 1
        obj["schema_version"] = version
    if version > target:
        raise DecodeError(
            f"{type_name} schema_version {version} is newer than this reader ({target})"
        )
    return obj


def _decode(
    data: bytes | str | None, names: frozenset[str], kind: str, adapter: TypeAdapter[Any]
) -> Any:
    obj = _load(data)
    message_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    type_name = obj.get("type")
    if not isinstance(type_name, str) or type_name not in names:
        raise DecodeError(f"unknown {kind} type {_quoted(type_name)}", message_id=message_id)
    obj = _upcast(obj)
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        reason, _ = describe_validation_error(exc)
        raise DecodeError(f"invalid {type_name}: {reason}", message_id=message_id) from None
    except SecretInConfig as exc:
        raise DecodeError(str(exc), message_id=message_id) from None


def decode_event(data: bytes | str | None) -> EventBase:
    """Bytes -> event. Raises ``DecodeError`` (with ``reason``) for anything unreadable."""
    if data:
        # Fast path: current-schema events parse and validate in one pass of pydantic-core.
        # Anything it refuses (old schema_version, unknown type, bad JSON) takes the slow path,
        # which upcasts or explains.
        try:
            fast = EVENT_ADAPTER.validate_json(data)
        except (ValidationError, SecretInConfig):
            pass
        else:
            _require_identity(fast)
            return fast
    event: EventBase = _decode(data, _EVENT_NAMES, "event", EVENT_ADAPTER)
    _require_identity(event)
    return event


def _require_identity(event: EventBase) -> None:
    # The envelope's defaults (fresh id, now) serve construction; a stored event without its
    # own id or time would read differently on every replay.
    missing = {"id", "occurred_at"} - event.model_fields_set
    if missing:
        raise DecodeError(f"event without {', '.join(sorted(missing))}", message_id=None)


def decode_command(data: bytes | str | None) -> CommandBase:
    """Bytes -> command. Raises ``DecodeError``; ``SecretInConfig`` surfaces as its own type."""
    obj = _load(data)
    message_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    # contract 1.1: a command names itself. An id the registry invented could be matched by
    # nobody, and a resend would not be recognised as one.
    if "type" not in obj:
        raise DecodeError(
            "a command needs its `type` in its JSON (the Kafka header is not read)",
            message_id=message_id,
        )
    if "id" not in obj:
        raise DecodeError("a command needs an `id`: its idempotency key, which keys its reply")
    if not isinstance(obj.get("type"), str) or obj.get("type") not in _COMMAND_NAMES:
        raise DecodeError(f"unknown command type {_quoted(obj.get('type'))}", message_id=message_id)
    obj = _upcast(obj)
    try:
        command: CommandBase = COMMAND_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        reason, _ = describe_validation_error(exc)
        raise DecodeError(f"invalid {obj.get('type')}: {reason}", message_id=message_id) from None
    except SecretInConfig as exc:
        exc.message_id = message_id
        raise
    return command


def decode_reply(data: bytes | str | None) -> CommandReply:
    """Bytes -> reply from ``registry.replies``."""
    obj = _load(data)
    try:
        return CommandReply.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError(f"invalid CommandReply: {describe_validation_error(exc)[0]}") from None


def careful_fact(data: bytes | str | None) -> Fact:
    """The fact of an event through the pydantic models (upcasts, coerces, or explains).

    Raises ``DecodeError`` for anything unreadable."""
    return fact_of(decode_event(data))


def decode_fact(data: bytes | str | None) -> Fact:
    """The fact of an event: the strict fast check when it is sure, else ``careful_fact``."""
    fact = check(data) if data else None
    return fact if fact is not None else careful_fact(data)
