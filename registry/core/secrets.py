"""Raw secrets in a command, found by their look wherever they hide (docs/security.md#secrets).

``types.py`` keeps the structural rule (``credentials`` hold references; a secret-looking key
of a config holds no raw string). This module adds what a careless sender slips past it: a
well-known secret format as a value (or a key) in any field of a command, free text
included (``description``, ``reason``, ``actor``...), in lists and nested objects, and any
non-reference under a secret-looking key however deep or wrapped (``apiKey: ["sk-..."]``).

It runs on commands at the edge (the decider, and every client before it sends), not on
events: the log's history must stay readable whatever a later rule would refuse.

Messages name the field by its path, with any path segment that could itself be a secret
masked (``parameters.*``): an offending value or key is never echoed.
"""

from __future__ import annotations

import re
from typing import Any

from registry.core.types import (
    NON_SECRET_CREDENTIAL_KEYS,
    NON_SECRET_SETTING_KEYS,
    SECRET_KEY,
    is_secret_reference,
    mask_segment,
)

__all__ = ["SECRET_VALUE", "find_secret", "looks_secret", "safe_path"]

SECRET_VALUE = re.compile(
    "|".join(
        (
            r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic, Stripe
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
            r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}",  # GitHub tokens
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack tokens
            r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
            r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",  # JWTs
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",  # PEM private keys
            # passwords and keys in connection strings (Azure, ODBC, JDBC...)
            r"(?i:(?:^|;)\s*(?:password|pwd|accountkey|sharedaccesskey|secret)\s*=\s*[^;\s])",
            # keys and signatures in URL query strings (incl. Azure SAS ``sig``)
            r"(?i:[?&](?:key|api[-_]?key|apikey|token|access[-_]?token|auth|sig|signature"
            r"|password|pwd|secret|client[-_]?secret|code)=[^&#\s])",
            r"(?i:\b[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@)",  # user:password@host in a URL
        )
    )
)
"""Well-known secret formats, matched anywhere in a string."""

# Key names that hold secrets but that ``SECRET_KEY`` (a search over names) cannot match
# without refusing ordinary words.
_SECRET_NAMES = frozenset(
    {"key", "pwd", "pass", "sig", "signature", "connectionstring", "connection_string", "sas"}
)


# Every pattern above needs one of these in the text: a cheap test first (Python's ``re``
# tries each alternative at each position; most text holds none of these).
_NEEDLES = (
    "=", "@", "sk-", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "AIza", "ghp_", "gho_",
    "ghu_", "ghs_", "ghr_", "github_pat_",
    "xox", "hf_", "eyJ", "PRIVATE KEY",
)  # fmt: skip


def looks_secret(text: str) -> bool:
    """Does ``text`` hold a well-known secret format?"""
    for needle in _NEEDLES:
        if needle in text:
            return SECRET_VALUE.search(text) is not None
    return False


def _secret_key(key: str) -> bool:
    if key in NON_SECRET_SETTING_KEYS or key in NON_SECRET_CREDENTIAL_KEYS:
        return False
    return SECRET_KEY.search(key) is not None or key.lower() in _SECRET_NAMES


def safe_path(*segments: object) -> str:
    """``a.b[0].c`` from ``segments``, with segments that could be secrets masked."""
    out = ""
    for seg in segments:
        if isinstance(seg, int) and not isinstance(seg, bool):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + mask_segment(seg)
    return out or "message"


def _strings(value: Any, out: list[str], under_key: bool) -> bool:
    """Collect every string (keys too) of ``value`` into ``out``; True when a string sits
    under a secret-looking key without being a reference (then only the walk can tell)."""
    if isinstance(value, str):
        out.append(value)
        return under_key and not is_secret_reference(value)
    suspect = False
    if isinstance(value, dict):
        for key, inner in value.items():
            name = str(key)
            out.append(name)
            plain = name in NON_SECRET_SETTING_KEYS or name in NON_SECRET_CREDENTIAL_KEYS
            suspect = (
                _strings(inner, out, not plain and (under_key or _secret_key(name))) or suspect
            )
    elif isinstance(value, list):
        for inner in value:
            suspect = _strings(inner, out, under_key) or suspect
    return suspect


def find_secret(value: Any, path: tuple[object, ...] = (), under_key: bool = False) -> str | None:
    """The (masked) path of the first raw secret in ``value`` (a decoded JSON message), or
    ``None``. A string is a secret when it has a well-known secret format, or when it sits
    (at any depth) under a secret-looking key and is not a reference (``env:``/``file:``).

    The common answer, none, costs one regex pass over all the strings joined by ``;`` (a
    separator no pattern can lose a match to); only a hit walks the message for its path."""
    texts: list[str] = []
    if not _strings(value, texts, under_key) and not looks_secret(";".join(texts)):
        return None
    return _walk(value, path, under_key)


def _walk(value: Any, path: tuple[object, ...], under_key: bool) -> str | None:
    if isinstance(value, str):
        if looks_secret(value) or (under_key and not is_secret_reference(value)):
            return safe_path(*path)
        return None
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and looks_secret(key):
                return safe_path(*path, key)
            name = str(key)
            plain = name in NON_SECRET_SETTING_KEYS or name in NON_SECRET_CREDENTIAL_KEYS
            found = _walk(inner, (*path, key), not plain and (under_key or _secret_key(name)))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found = _walk(inner, (*path, i), under_key)
            if found is not None:
                return found
    return None
