"""httpx at the boundary: one client per provider, vendor errors mapped to typed failures.

This is the cut-off point for httpx: nothing past it sees an httpx type. Messages carry the
status and a short, redacted excerpt of the vendor's body; never a header, never the URL
(whose query string may carry a key).

Every client calls only the hosts of its provider's allow-list (``consumers.providers.hosts``:
vendor defaults plus ``grants.hosts``, resolved addresses checked and pinned per connection),
never follows a redirect and ignores proxies from the environment. A refused host is a
``HostNotAllowed`` failure raised before any byte is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from consumers.errors import (
    ProviderBadResponse,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from consumers.providers.base import ProviderSpec
from consumers.providers.hosts import GuardedTransport, HostPolicy
from consumers.providers.secrets import redact

__all__ = [
    "TRANSIENT_STATUSES",
    "check_status",
    "host_policy",
    "make_client",
    "post_json",
    "prompt_of",
]

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
_EXCERPT = 200


def host_policy(spec: ProviderSpec, defaults: Iterable[str]) -> HostPolicy:
    """The allow-list of ``spec``'s provider: its vendor ``defaults`` plus the grants.

    Raises ``ProviderConfigInvalid`` for a grant entry that is no host."""
    return HostPolicy(spec.label, defaults, spec.grants)


def make_client(spec: ProviderSpec, hosts: HostPolicy) -> httpx.AsyncClient:
    """An httpx client with the spec's timeout, a pool sized to its concurrency, and the host
    checks of ``hosts`` on every request and connection. Redirects are never followed."""
    policy = spec.policy
    limits = httpx.Limits(
        max_connections=policy.concurrency, max_keepalive_connections=policy.concurrency
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_s),
        transport=GuardedTransport(hosts, limits),
        follow_redirects=False,
        trust_env=False,
    )


def _excerpt(body: bytes) -> str:
    text = body[: _EXCERPT * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    return redact(text)[:_EXCERPT]


def check_status(response: httpx.Response, what: str) -> None:
    """Raise the typed failure of a non-2xx answer: 5xx/408/429... transient, other 4xx not,
    a redirect (never followed) a bad response."""
    status = response.status_code
    if 300 <= status < 400:
        raise ProviderBadResponse(f"{what} answered HTTP {status}: a redirect, never followed")
    if status < 400:
        return
    detail = f"{what} answered HTTP {status}: {_excerpt(response.content)}"
    if status >= 500 or status in TRANSIENT_STATUSES:
        raise ProviderUnavailable(detail)
    raise ProviderRejected(detail)


async def post_json(
    client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str], what: str
) -> Any:
    """POST ``body`` and return the decoded JSON answer.

    Raises:
        ProviderTimeout: no answer within the client's timeout.
        ProviderUnavailable: connection failure, 5xx, 429 (transient: retried by the policy).
        ProviderRejected: any other 4xx.
        ProviderBadResponse: the answer is not JSON.
    """
    try:
        response = await client.post(url, content=body, headers=dict(headers))
    except httpx.TimeoutException:
        raise ProviderTimeout(f"{what} did not answer in time") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"{what} unreachable ({type(exc).__name__})") from None
    check_status(response, what)
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderBadResponse(
            f"{what} answered a body that is not JSON: {_excerpt(response.content)}"
        ) from None


def prompt_of(value: Any) -> str | list[dict[str, Any]]:
    """The prompt of an LLM request: text as is, ``{"messages": [...]}`` as chat messages,
    ``{"prompt"|"text": ...}`` as that text, anything else as its JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        messages = value.get("messages")
        if isinstance(messages, list):
            return messages
        for key in ("prompt", "text"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return orjson.dumps(value).decode()
