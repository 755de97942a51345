"""HTTP providers call only the hosts on their allow-list; non-public addresses (named or
numeric, however spelled) only when granted; nothing is sent to a refused host; redirects
are never followed.

docs/security-providers.md cites these tests.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.errors import HostNotAllowed, PredictionFailure, ProviderConfigInvalid
from consumers.providers import BrokenProvider, CallPolicy, ModelProvider, ProviderFactory
from consumers.providers.hosts import HostPolicy, is_public, parse_rule
from registry.core.types import ModelConfig
from registry.infra.settings import GrantSettings
from tests.consumers.loopback import LoopbackServer, Reply, Request, serve

SECRET = "model-secret-value-for-the-vendor-only-4411"
POLICY = CallPolicy(timeout_s=2, retries=0)
DEFAULTS = GrantSettings()


@pytest.fixture(autouse=True)
def granted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SECRET_KEY", SECRET)


# --------------------------------------------------------------------------- the classifier

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # shared (CGNAT)
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fd00::1",
    "fc00::1",
    "ff02::1",
    "ff0e::1",  # global-scope multicast
    "::ffff:127.0.0.1",  # mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2001:db8::1",  # documentation
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "104.18.7.192", "2606:4700::6810:7c0", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


_PRIVATE_V4 = [
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
]


@given(
    net=st.sampled_from(_PRIVATE_V4),
    offset=st.integers(min_value=0, max_value=2**24 - 1),
)
def test_a_private_ipv4_is_private_in_every_ipv6_disguise(
    net: ipaddress.IPv4Network, offset: int
) -> None:
    v4 = net[offset % net.num_addresses]
    n = int(v4)
    disguises = [
        v4,
        ipaddress.IPv6Address(f"::ffff:{v4}"),
        ipaddress.IPv6Address(f"::{v4}"),
        ipaddress.IPv6Address((0x0064FF9B << 96) | n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),
    ]
    for ip in disguises:
        assert not is_public(ip), ip


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_a_mapped_ipv4_is_judged_as_the_ipv4(n: int) -> None:
    v4 = ipaddress.IPv4Address(n)
    assert is_public(ipaddress.IPv6Address(f"::ffff:{v4}")) == is_public(v4)


# --------------------------------------------------------------------------- URLs


def _policy(defaults: tuple[str, ...] = (), **grants: Any) -> HostPolicy:
    return HostPolicy("test model", defaults, GrantSettings(**grants))


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # 127.0.0.1 in decimal
        "http://0x7f.1/",  # in hex, short form
        "http://017700000001/",  # in octal
        "http://127.1/",
        "http://0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]:8080/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fe80::1%25eth0]/",
        "http://metadata.google.internal/",
        "https://api.openai.com.attacker.example/v1",
        "https://attacker.example/api.openai.com",
        "http://api.openai.com/v1",  # the vendor's host, but not over https
        "https://api.openai.com:8443/v1",
        "file:///etc/passwd",
        "ftp://api.openai.com/",
        "gopher://127.0.0.1:6379/",
    ],
)
def test_urls_off_the_list_are_refused_naming_the_host(url: str) -> None:
    with pytest.raises(HostNotAllowed) as info:
        _policy(("api.openai.com:443",)).check_url(url)
    assert info.value.code == "HostNotAllowed"
    assert "test model" in info.value.message


def test_vendor_defaults_and_grant_patterns() -> None:
    openai = _policy(("api.openai.com:443",))
    assert openai.check_url("https://api.openai.com/v1") == ("https", "api.openai.com", 443)
    sagemaker = _policy(("runtime.sagemaker.*.amazonaws.com:443",))
    sagemaker.check_url("https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/x")
    for url in (
        "https://bucket.s3.amazonaws.com/",
        "https://runtime.sagemaker.a.b.amazonaws.com/",
        "https://runtime.sagemaker.amazonaws.com/",
    ):
        with pytest.raises(HostNotAllowed):
            sagemaker.check_url(url)
    azure = _policy(("*.inference.ml.azure.com:443",))
    azure.check_url("https://lead.westeurope.inference.ml.azure.com/score")
    with pytest.raises(HostNotAllowed):
        azure.check_url("https://inference.ml.azure.com.evil.example/score")
    granted = _policy(hosts=("models.internal:8080", "*.corp.example", "10.1.2.3", "[::1]:9000"))
    granted.check_url("http://models.internal:8080/score")
    granted.check_url("https://a.b.corp.example/x")
    granted.check_url("http://10.1.2.3:5000/")
    granted.check_url("http://[::1]:9000/")
    for url in ("http://models.internal:8081/", "https://corp.example/", "http://[::1]:9001/"):
        with pytest.raises(HostNotAllowed):
            granted.check_url(url)


@pytest.mark.parametrize("entry", ["", "http://x", "a/b", "host:port", "host:0", "[::1", "a@b"])
def test_a_malformed_grant_is_a_config_error(entry: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's own error
        parse_rule(entry)
    with pytest.raises(ProviderConfigInvalid):
        _policy(hosts=(entry,))


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "017700000001", "127.1", "localhost"],
)
async def test_numeric_tricks_resolve_to_loopback_and_are_refused(host: str) -> None:
    policy = _policy(hosts=(host,))  # even with the spelling itself granted
    with pytest.raises(HostNotAllowed, match="not public and not granted"):
        await policy.vetted_addresses(host, 80)
    vetted = await _policy(hosts=(host, "127.0.0.1", "::1")).vetted_addresses(host, 80)
    assert vetted
    assert all(ip.is_loopback for ip in vetted)
    assert await _policy(hosts=(host,), allow_private_hosts=True).vetted_addresses(host, 80)


# --------------------------------------------------------------------------- end to end


def _config(provider: str, endpoint: str, credentials: dict[str, str], **pc: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": f"{provider}-model",
            "name": "m",
            "version": "1.0.0",
            "type": "classification",
            "provider": provider,
            "providerConfig": {
                "provider": provider,
                "endpoint": endpoint,
                "credentials": credentials,
                **pc,
            },
        }
    )


_KEY = {"apiKey": "env:MODEL_SECRET_KEY"}
_AWS = {
    "accessKeyId": "env:MODEL_SECRET_KEY",
    "secretAccessKey": "env:MODEL_SECRET_KEY",
    "region": "eu-west-1",
}


def _attacks(url: str) -> list[ModelConfig]:
    """Every HTTP provider pointed at ``url`` with the granted secret as its key."""
    return [
        _config("openai", url + "/v1", _KEY, model="gpt-4o-mini"),
        _config("anthropic", url, _KEY, model="claude"),
        _config("azure-ml", url + "/score", _KEY),
        _config("aws-sagemaker", url, _AWS, endpointName="internal"),
    ]


async def _outputs(provider: ModelProvider) -> list[Any]:
    try:
        return await provider.predict_batch([{"visits": 1}])
    finally:
        await provider.aclose()


async def test_loopback_endpoints_are_refused_and_get_no_byte(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The attack: point a model at an internal service; its answer would come back in the
    results, and the model's key with the request."""
    caplog.set_level(logging.DEBUG)
    with serve(lambda req: Reply(200, {"internal": "data"})) as server:
        for config in _attacks(server.url):
            provider = ProviderFactory(POLICY, grants=DEFAULTS).get_provider(config)
            assert isinstance(provider, BrokenProvider), config.provider
            (out,) = await _outputs(provider)
            assert isinstance(out, HostNotAllowed), config.provider
            assert "127.0.0.1" in out.message
            assert SECRET not in out.message
        assert server.count() == 0
    assert SECRET not in caplog.text


async def test_a_granted_name_that_resolves_to_loopback_is_refused_at_connection() -> None:
    """The name passes the list; the address it resolves to is checked when connecting
    (the same check a rebinding name meets: the connection goes to the checked address)."""
    with serve(lambda req: Reply(200, {"predictions": [{"label": 1}]})) as server:
        port = server.httpd.server_address[1]
        named = f"http://localhost:{port}"
        for config in _attacks(named):
            grants = GrantSettings(hosts=(f"localhost:{port}",))
            provider = ProviderFactory(POLICY, grants=grants).get_provider(config)
            assert not isinstance(provider, BrokenProvider), config.provider
            (out,) = await _outputs(provider)
            assert isinstance(out, HostNotAllowed), (config.provider, out)
            assert "resolves to an address that is not public" in out.message
            assert SECRET not in out.message
        assert server.count() == 0
        # Granting the addresses too (or every private address) lets it through.
        for grants in (
            GrantSettings(hosts=(f"localhost:{port}", "127.0.0.1", "::1")),
            GrantSettings(hosts=(f"localhost:{port}",), allow_private_hosts=True),
        ):
            azure = _config("azure-ml", named + "/score", _KEY)
            provider = ProviderFactory(POLICY, grants=grants).get_provider(azure)
            assert await _outputs(provider) == [{"label": 1}]
        assert server.count() == 2


async def test_a_granted_address_works_for_every_provider() -> None:
    def respond(req: Request) -> Reply:
        if req.path.endswith("/chat/completions"):
            return Reply(
                200,
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )
        if req.path == "/v1/messages":
            return Reply(200, {"content": [{"type": "text", "text": "ok"}]})
        if req.path == "/score":
            return Reply(200, [{"label": 1}])
        return Reply(200, {"score": 1})

    with serve(respond) as server:
        grants = GrantSettings(hosts=("127.0.0.1",))
        for config in _attacks(server.url):
            provider = ProviderFactory(POLICY, grants=grants).get_provider(config)
            (out,) = await _outputs(provider)
            assert not isinstance(out, PredictionFailure), (config.provider, out)
        assert server.count() == 4


def _redirect_to(target: LoopbackServer) -> Any:
    return lambda req: Reply(302, {}, headers={"Location": target.url + req.path})


async def test_redirects_are_never_followed() -> None:
    with (
        serve(lambda req: Reply(200, {"stolen": True})) as target,
        serve(_redirect_to(target)) as redirector,
    ):
        grants = GrantSettings(hosts=("127.0.0.1",))  # both servers are granted, even so
        for config in _attacks(redirector.url):
            provider = ProviderFactory(POLICY, grants=grants).get_provider(config)
            (out,) = await _outputs(provider)
            assert isinstance(out, PredictionFailure), (config.provider, out)
            assert "302" in out.message
        assert redirector.count() == 4
        assert target.count() == 0
