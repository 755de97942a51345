"""aws-sagemaker: ``InvokeEndpoint`` of the SageMaker runtime over httpx, SigV4-signed by botocore.

Settings: ``endpointName`` (required), ``region`` (or ``credentials.region``), ``contentType``
and ``accept`` (default ``application/json``), ``targetModel`` / ``targetVariant``
(multi-model and variant routing headers). ``endpoint`` overrides the runtime base URL
(default ``https://runtime.sagemaker.<region>.amazonaws.com``). ``credentials.accessKeyId``,
``credentials.secretAccessKey`` (and optionally ``credentials.sessionToken``) are references,
resolved per call and handed to botocore's ``SigV4Auth``: the signature is botocore's, not
ours.

Hosts: the SageMaker runtime (``runtime.sagemaker.<region>.amazonaws.com``, its FIPS and
China variants, https) and ``grants.hosts`` only (docs/security-providers.md).

One call per input; the body is the input's JSON. A JSON answer that is a mapping is the
output as is, anything else is wrapped as ``{"prediction": value}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from consumers.errors import ProviderConfigInvalid
from consumers.providers.base import ProviderSpec, RemoteProvider
from consumers.providers.http import host_policy, make_client, post_json

__all__ = ["DEFAULT_HOSTS", "SageMakerProvider", "sign_request"]

SERVICE = "sagemaker"
DEFAULT_HOSTS = (
    "runtime.sagemaker.*.amazonaws.com:443",
    "runtime-fips.sagemaker.*.amazonaws.com:443",
    "runtime.sagemaker.*.amazonaws.com.cn:443",
)
"""Hosts a SageMaker model may call ungranted: the runtime of any region (https only)."""


def sign_request(
    url: str,
    body: bytes,
    headers: dict[str, str],
    region: str,
    access_key: str,
    secret_key: str,
    token: str | None,
) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date`` (and the token) and the SigV4 ``Authorization``."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(access_key, secret_key, token), SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class SageMakerProvider(RemoteProvider):
    """One signed ``InvokeEndpoint`` per input."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        name: str = spec.setting("endpointName")
        region = spec.plain("region")
        if not region:
            raise ProviderConfigInvalid(
                f"{spec.label}: a region is required (providerConfig.region or credentials.region)"
            )
        self.region = region
        base = spec.endpoint or f"https://runtime.sagemaker.{region}.amazonaws.com"
        self.url = f"{base.rstrip('/')}/endpoints/{quote(name, safe='')}/invocations"
        hosts = host_policy(spec, DEFAULT_HOSTS)
        hosts.check_url(self.url)
        self.headers = {
            "Content-Type": spec.setting("contentType", "application/json"),
            "Accept": spec.setting("accept", "application/json"),
        }
        for setting, header in (
            ("targetModel", "X-Amzn-SageMaker-Target-Model"),
            ("targetVariant", "X-Amzn-SageMaker-Target-Variant"),
        ):
            value = spec.setting(setting, None)
            if value:
                self.headers[header] = value
        self.what = f"SageMaker endpoint {name}"
        self.client = make_client(spec, hosts)

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        access = self.spec.credential("accessKeyId")
        secret = self.spec.credential("secretAccessKey")
        token = self.spec.credential("sessionToken", required=False)
        assert access is not None
        assert secret is not None
        return sign_request(
            self.url,
            body,
            dict(self.headers),
            self.region,
            access.reveal(),
            secret.reveal(),
            token.reveal() if token is not None else None,
        )

    async def predict_one(self, value: Any) -> Any:
        body = orjson.dumps(value)
        answer = await post_json(self.client, self.url, body, self._signed_headers(body), self.what)
        return answer if isinstance(answer, dict) else {"prediction": answer}

    async def aclose(self) -> None:
        await self.client.aclose()
