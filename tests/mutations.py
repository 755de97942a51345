"""Mutated messages for fuzz tests: any topic's valid messages in, hostile bytes out.

``mutations(valid, seed, n)`` yields ``n`` ``Mutation``s (``.value`` the bytes to produce,
``.kind`` what was done, ``.id`` the message id it carries when it still has a readable one)
built from ``valid``, a list of valid messages (dicts, or the JSON bytes of objects). It is
deterministic for a seed and knows nothing of any message type, so every input topic's fuzz
test can use it (``mutated_bytes`` yields the bytes alone).

What it does, each a ``kind`` (weights in ``KINDS``):

- ``wrong_type``, ``null``, ``missing``, ``extra``: a field (at any depth) gets a value of
  another type, ``null``, disappears, or an unknown field appears;
- ``nan``, ``infinity``, ``huge_number``: ``NaN``, ``Infinity``, ``-Infinity``, ``1e400``,
  ``-1e400``, ``2**70``, ``-2**70``, ``1e-400`` written as JSON text into a field;
- ``deep``: a field becomes 300 or 1,000 levels of nested arrays or objects;
- ``large``: a field becomes a string of ``large_bytes`` (1 MiB by default);
- ``empty`` (no bytes), ``non_utf8`` (invalid UTF-8 inside a string, or random bytes),
  ``duplicate_key`` (a field given twice, with another value), ``control_chars`` (raw and
  escaped control characters in a string, a lone surrogate escape), ``truncated`` (valid
  JSON cut anywhere), ``non_object`` (an array, string, number, ``null``, ``true`` at the
  top), ``bit_flip`` (a few random bytes changed), ``bom`` (a UTF-8 byte-order mark first).

Distinct ids where possible: with ``id_field`` (default ``"id"``) each mutation starts from a
copy of a valid message whose id is ``f"{id_prefix}{i}"``, so a test can match what comes out
to what went in; ``Mutation.id`` says whether that id is still readable after the mutation
(``None`` when the mutation removed or garbled it, or the bytes are not a JSON object).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

__all__ = ["KINDS", "Mutation", "mutated_bytes", "mutations", "readable_id"]

# kind -> weight (relative frequency)
KINDS: dict[str, int] = {
    "wrong_type": 12,
    "null": 6,
    "missing": 8,
    "extra": 5,
    "nan": 4,
    "infinity": 4,
    "huge_number": 6,
    "deep": 4,
    "large": 1,
    "empty": 2,
    "non_utf8": 5,
    "duplicate_key": 5,
    "control_chars": 5,
    "truncated": 8,
    "non_object": 4,
    "bit_flip": 6,
    "bom": 2,
}

_TOKEN = "\x00mutation-token\x00"  # a placeholder string replaced by raw JSON text
_HUGE = [b"1e400", b"-1e400", str(2**70).encode(), str(-(2**70)).encode(), b"1e-400"]
_OTHER_VALUES: list[Any] = [
    0,
    -1,
    1.5,
    True,
    False,
    "",
    "text",
    [],
    [1, "two", None],
    {},
    {"nested": {"x": 1}},
    2**63 - 1,
]


class _Context(NamedTuple):
    large_bytes: int
    tag: str  # unique per mutation: strings a mutation writes carry it, so ids stay distinct


class Mutation(NamedTuple):
    """One hostile message: ``value`` to produce, what ``kind`` of mutation made it, and the
    id it still carries (``None`` when unreadable)."""

    value: bytes
    kind: str
    id: str | None


def readable_id(value: bytes, id_field: str = "id") -> str | None:
    """The ``id_field`` of ``value`` when it is a JSON object with a string there, else None."""
    try:
        decoded = orjson.loads(value)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    if not isinstance(decoded, dict):
        return None
    found = decoded.get(id_field)
    return found if isinstance(found, str) else None


def mutated_bytes(
    valid: Sequence[Mapping[str, Any] | bytes], seed: int, n: int, **options: Any
) -> Iterator[bytes]:
    """The values of ``mutations(valid, seed, n, **options)``."""
    for m in mutations(valid, seed, n, **options):
        yield m.value


def mutations(
    valid: Sequence[Mapping[str, Any] | bytes],
    seed: int,
    n: int,
    *,
    id_field: str | None = "id",
    id_prefix: str = "m-",
    large_bytes: int = 1 << 20,
    kinds: Mapping[str, int] | None = None,
) -> Iterator[Mutation]:
    """``n`` mutations of the messages in ``valid`` (see the module doc); deterministic."""
    if not valid:
        raise ValueError("mutations need at least one valid message")
    bases = [_as_dict(v) for v in valid]
    weights = dict(kinds or KINDS)
    names, chances = list(weights), list(weights.values())
    rng = random.Random(seed)
    for i in range(n):
        base = copy.deepcopy(rng.choice(bases))
        tag = f"{id_prefix}{i}"
        if id_field is not None:
            base[id_field] = tag
        kind = rng.choices(names, chances)[0]
        value = _MUTATORS[kind](rng, base, _Context(large_bytes, tag))
        yield Mutation(value, kind, readable_id(value, id_field) if id_field else None)


# --------------------------------------------------------------------------- helpers


def _as_dict(message: Mapping[str, Any] | bytes) -> dict[str, Any]:
    decoded = orjson.loads(message) if isinstance(message, bytes) else dict(message)
    if not isinstance(decoded, dict):
        raise ValueError("a valid message must be a JSON object")
    return decoded


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (keys of dicts, indexes of lists)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((*prefix, index))
            out.extend(_paths(item, (*prefix, index)))
    return out


def _pick(rng: random.Random, base: dict[str, Any]) -> tuple[Any, Any]:
    """A random (container, key) inside ``base``: top-level fields twice as likely."""
    paths = _paths(base)
    top = [p for p in paths if len(p) == 1]
    path: tuple[Any, ...]
    if top and (rng.random() < 0.5 or len(paths) == len(top)):
        path = rng.choice(top)
    else:
        path = rng.choice(paths) if paths else ("field",)
    container: Any = base
    for step in path[:-1]:
        container = container[step]
    return container, path[-1]


def _dumps(value: Any, raw: bytes | None = None) -> bytes:
    """JSON of ``value``; the placeholder string, if any, becomes the raw JSON text ``raw``."""
    text = orjson.dumps(value)
    if raw is not None:
        text = text.replace(orjson.dumps(_TOKEN), raw, 1)
    return text


def _set_raw(rng: random.Random, base: dict[str, Any], raw: bytes) -> bytes:
    container, key = _pick(rng, base)
    container[key] = _TOKEN
    return _dumps(base, raw)


def _other_type(rng: random.Random, current: Any) -> Any:
    choices = [v for v in _OTHER_VALUES if type(v) is not type(current)]
    return copy.deepcopy(rng.choice(choices))


# --------------------------------------------------------------------------- mutators


def _wrong_type(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    current = container.get(key) if isinstance(container, dict) else container[key]
    container[key] = _other_type(rng, current)
    return _dumps(base)


def _null(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    container[key] = None
    return _dumps(base)


def _missing(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    if isinstance(container, dict):
        container.pop(key, None)
    else:
        container.pop(key)
    return _dumps(base)


def _extra(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    target = container if isinstance(container, dict) else base
    name = rng.choice(["surprise", "__proto__", "x" * rng.randint(1, 300), "id ", "ünï"])
    target[name] = _other_type(rng, None)
    return _dumps(base)


def _nan(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return _set_raw(rng, base, b"NaN")


def _infinity(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return _set_raw(rng, base, rng.choice([b"Infinity", b"-Infinity"]))


def _huge_number(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return _set_raw(rng, base, rng.choice(_HUGE))


def _deep(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    levels = rng.choice([300, 1000])
    if rng.random() < 0.5:
        raw = b"[" * levels + b"1" + b"]" * levels
    else:
        raw = b'{"a":' * levels + b"1" + b"}" * levels
    return _set_raw(rng, base, raw)


def _large(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    container[key] = ctx.tag + "x" * max(0, ctx.large_bytes - len(ctx.tag))
    return _dumps(base)


def _empty(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return b""


def _non_utf8(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    if rng.random() < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + b"\xff"
    container, key = _pick(rng, base)
    container[key] = _TOKEN
    bad = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
    return _dumps(base, b'"' + b"abc" + bad + b'"')


def _duplicate_key(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    text = _dumps(base)
    key = rng.choice(list(base)) if base else "id"
    other = orjson.dumps(_other_type(rng, base.get(key)))
    addition = orjson.dumps(key) + b":" + other
    if text == b"{}":
        return b"{" + addition + b"}"
    return (
        text[:-1] + b"," + addition + b"}"
        if rng.random() < 0.5
        else b"{" + addition + b"," + text[1:]
    )


def _control_chars(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    container, key = _pick(rng, base)
    container[key] = _TOKEN
    inner = rng.choice(
        [
            b"a\x00b",  # raw NUL: not valid JSON
            b"line\nbreak\ttab\x1b",
            b"\\u0000\\u001f\\u007f",  # escaped: valid JSON
            b"\\ud800",  # a lone surrogate
            b"\\udfff\\ud800x",
            b"\x7f\x80",
        ]
    )
    # The value's own id in it: a mutated id stays distinct from the others'.
    return _dumps(base, b'"' + ctx.tag.encode() + inner + b'"')


def _truncated(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    text = _dumps(base)
    return text[: rng.randrange(1, max(2, len(text)))]


def _non_object(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return rng.choice(
        [
            b"[]",
            b"[" + _dumps(base) + b"]",
            b'"a string"',
            b"42",
            b"-0.0",
            b"null",
            b"true",
            b"1e400",
        ]
    )


def _bit_flip(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    data = bytearray(_dumps(base))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _bom(rng: random.Random, base: dict[str, Any], ctx: _Context) -> bytes:
    return b"\xef\xbb\xbf" + _dumps(base)


_MUTATORS = {
    "wrong_type": _wrong_type,
    "null": _null,
    "missing": _missing,
    "extra": _extra,
    "nan": _nan,
    "infinity": _infinity,
    "huge_number": _huge_number,
    "deep": _deep,
    "large": _large,
    "empty": _empty,
    "non_utf8": _non_utf8,
    "duplicate_key": _duplicate_key,
    "control_chars": _control_chars,
    "truncated": _truncated,
    "non_object": _non_object,
    "bit_flip": _bit_flip,
    "bom": _bom,
}
assert set(_MUTATORS) == set(KINDS)
