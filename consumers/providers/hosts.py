"""Which hosts an HTTP provider may call, checked before any byte is sent.

A provider's allow-list is its own vendor hosts (``DEFAULT_HOSTS`` of each adapter: https on
port 443 only) plus the operator's ``grants.hosts``. A URL passes when its scheme is http or
https and its host matches the list (:meth:`HostPolicy.check_url`, at build time and again
before each request). Then, at connection time, the host is resolved and every address it
resolves to must be public; a loopback, private (RFC 1918, ULA), shared, link-local (cloud
metadata at 169.254.169.254 included), unspecified, multicast or reserved address passes only
when that address itself is granted (an IP entry of ``grants.hosts``) or
``grants.allow_private_hosts`` is on (:func:`is_public`). IPv4 carried in IPv6 (mapped,
compatible, 6to4, NAT64) is judged by the IPv4 address it carries. Numeric tricks
(``http://2130706433/``, ``http://0x7f.1/``) are no names of the list and resolve, like any
name, to an address that is judged.

DNS rebinding: the connection is made to the very address that was checked (the resolved
address is pinned for that connection by :class:`GuardedBackend`; TLS still verifies the
certificate against the host name), so a name cannot pass the check with one address and
connect to another. Proxies from the environment are ignored (``trust_env=False``): a proxy
would connect on our behalf, past the check. Redirects are never followed.

Grant entries: ``host`` (any port), ``host:port``, ``*.domain`` (any name below ``domain``,
one or more labels), an IPv4 or IPv6 address (``10.0.0.5``, ``::1``, ``[::1]:8080``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from consumers.errors import HostNotAllowed, ProviderConfigInvalid
from registry.infra.settings import GrantSettings

__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "HostPolicy",
    "HostRule",
    "IPAddress",
    "is_public",
    "parse_rule",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_public(ip: IPAddress) -> bool:
    """True when ``ip`` is a public unicast address (what a provider may reach ungranted)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return is_public(embedded)
        if ip in _V4_COMPATIBLE:  # ::a.b.c.d (deprecated), :: and ::1 included
            return False
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_unspecified
    )


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address(text: str) -> IPAddress | None:
    """``text`` as an IP address in its standard notation, else None (then it is a name)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class HostRule:
    """One allow-list entry: a name pattern or an address, on one port or any."""

    host: str
    port: int | None = None
    https_only: bool = False

    @property
    def address(self) -> IPAddress | None:
        return _address(self.host)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.https_only and scheme != "https":
            return False
        if self.port is not None and self.port != port:
            return False
        mine = self.address
        if mine is not None:
            return mine == _address(host)
        return _labels_match(self.host.split("."), host.split("."))


def _labels_match(pattern: list[str], labels: list[str]) -> bool:
    """A leading ``*`` label matches one or more labels; another ``*`` exactly one."""
    if pattern and pattern[0] == "*":
        rest = pattern[1:]
        if len(labels) <= len(rest):
            return False
        return _labels_match(rest, labels[len(labels) - len(rest) :])
    if len(pattern) != len(labels):
        return False
    return all(p == "*" or p == label for p, label in zip(pattern, labels, strict=True))


def parse_rule(entry: str, *, https_only: bool = False) -> HostRule:
    """A grant entry as a rule. Raises ``ValueError`` for an entry that is no host."""
    text = entry.strip().lower()
    port: str = ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(entry)
        port = rest[1:]
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address
    else:
        host, _, port = text.partition(":")
    host = host.rstrip(".")
    if not host or any(c in host for c in "/@?#% \t"):
        raise ValueError(entry)
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(entry)
    return HostRule(host, int(port) if port else None, https_only)


class HostPolicy:
    """The allow-list of one provider: its vendor defaults and the operator's grants."""

    def __init__(self, label: str, defaults: Iterable[str], grants: GrantSettings) -> None:
        self.label = label
        try:
            self.defaults = tuple(parse_rule(d, https_only=True) for d in defaults)
            self.granted = tuple(parse_rule(g) for g in grants.hosts)
        except ValueError as bad:
            raise ProviderConfigInvalid(
                f"{label}: REGISTRY_GRANTS_HOSTS has an entry that is no host: {bad}"
            ) from None
        self.allow_private = grants.allow_private_hosts

    def check_url(self, url: str | httpx.URL) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of ``url`` when its scheme and host are allowed.

        The URL is parsed by httpx, as the request will be. Raises ``HostNotAllowed``.
        """
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise HostNotAllowed(f"{self.label}: the endpoint is not a URL") from None
        scheme = parsed.scheme.lower()
        if scheme not in _SCHEMES:
            raise HostNotAllowed(
                f"{self.label}: endpoint scheme '{scheme}' is not allowed (http or https only)"
            )
        host = parsed.raw_host.decode("ascii", "replace").lower().rstrip(".")
        if not host:
            raise HostNotAllowed(f"{self.label}: the endpoint has no host")
        port = parsed.port or _DEFAULT_PORTS[scheme]
        if not any(r.matches(scheme, host, port) for r in (*self.defaults, *self.granted)):
            raise HostNotAllowed(
                f"{self.label}: host {_shown(host, port)} is not on this provider's allow-list "
                "(the operator grants hosts in REGISTRY_GRANTS_HOSTS)"
            )
        return scheme, host, port

    def address_allowed(self, ip: IPAddress, port: int) -> bool:
        """A resolved address may be connected to: public, or itself granted."""
        if is_public(ip) or self.allow_private:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(r.address == ip and (r.port is None or r.port == port) for r in self.granted)

    async def vetted_addresses(
        self, host: str, port: int, timeout: float | None = None
    ) -> list[IPAddress]:
        """The addresses ``host`` resolves to, each one allowed; else ``HostNotAllowed``.

        Raises ``httpcore.ConnectError`` when the name does not resolve.
        """
        literal = _address(host.split("%", 1)[0])
        if literal is not None:
            found: Sequence[IPAddress] = [literal]
        else:
            found = await _resolve(host, port, timeout)
        if not found:
            raise httpcore.ConnectError(f"{host} has no address")
        for ip in found:
            if not self.address_allowed(ip, port):
                raise HostNotAllowed(
                    f"{self.label}: host {_shown(host, port)} resolves to an address that is "
                    "not public and not granted (REGISTRY_GRANTS_HOSTS, "
                    "REGISTRY_GRANTS_ALLOW_PRIVATE_HOSTS)"
                )
        return list(dict.fromkeys(found))


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
    except OSError:
        raise httpcore.ConnectError(f"cannot resolve {host}") from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and len(sockaddr) >= 4 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")  # keep the scope: never public
        out.append(ip)
    return out


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to vetted addresses (pinned per connection)."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.vetted_addresses(host, port, timeout)
        failure: Exception | None = None
        for ip in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise HostNotAllowed(f"{self.policy.label}: unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the host checks: the URL before the request, the address at
    connection time. No proxy, no environment (``trust_env=False``)."""

    def __init__(self, policy: HostPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self.policy = policy
        # httpx builds its pool without a way to name the network backend: rebuild it with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_url(request.url)
        return await super().handle_async_request(request)
