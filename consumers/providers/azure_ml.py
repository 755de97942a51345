"""azure-ml: an Azure Machine Learning online endpoint's scoring URI, over httpx.

``endpoint`` is the scoring URI (required). ``credentials.apiKey`` (or ``key``) is the
endpoint key, a reference resolved per call into ``Authorization: Bearer``. Settings:
``deployment`` (sent as ``azureml-model-deployment`` to pin a deployment), ``inputKey``
(default ``data``: the body is ``{"data": [input, ...]}``), ``batchSize`` (inputs per call,
default 50).

The answer is a list with one prediction per input, or a mapping holding that list under
``predictions``, ``outputs`` or ``result``. Each prediction that is not a mapping is wrapped
as ``{"prediction": value}``.

Hosts: Azure ML's managed online endpoints (``*.inference.ml.azure.com`` and the sovereign
clouds' ``.us``/``.cn``, https) and ``grants.hosts`` only (docs/security-providers.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from consumers.errors import CredentialUnavailable, ProviderBadResponse, ProviderConfigInvalid
from consumers.providers.base import ModelProvider, ProviderSpec
from consumers.providers.http import host_policy, make_client, post_json

__all__ = ["DEFAULT_HOSTS", "AzureMLProvider"]

DEFAULT_HOSTS = (
    "*.inference.ml.azure.com:443",
    "*.inference.ml.azure.us:443",
    "*.inference.ml.azure.cn:443",
)
"""Hosts an Azure ML model may call ungranted: managed online endpoints (https only)."""

_LIST_KEYS = ("predictions", "outputs", "result")


class AzureMLProvider(ModelProvider):
    """Batched calls to a scoring endpoint (``batchSize`` inputs per call)."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        if not spec.endpoint:
            raise ProviderConfigInvalid(f"{spec.label}: the scoring URI (endpoint) is required")
        self.url = spec.endpoint
        hosts = host_policy(spec, DEFAULT_HOSTS)
        hosts.check_url(self.url)
        self.deployment: str | None = spec.setting("deployment", None)
        self.input_key: str = spec.setting("inputKey", "data")
        self.batch_size = int(spec.number("batchSize", 50, minimum=1))
        self.client = make_client(spec, hosts)
        self._slots = asyncio.Semaphore(spec.policy.concurrency)

    def _headers(self) -> dict[str, str]:
        key = self.spec.credential("apiKey", required=False) or self.spec.credential(
            "key", required=False
        )
        if key is None:
            raise CredentialUnavailable(f"{self.spec.label}: credentials.apiKey is not configured")
        headers = {
            "Authorization": f"Bearer {key.reveal()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if self.deployment:
            headers["azureml-model-deployment"] = self.deployment
        return headers

    async def _score(self, chunk: Sequence[Any]) -> list[Any]:
        what = f"Azure ML endpoint for '{self.spec.model_id}'"
        body = orjson.dumps({self.input_key: list(chunk)})
        answer = await post_json(self.client, self.url, body, self._headers(), what)
        if isinstance(answer, dict):
            answer = next(
                (answer[k] for k in _LIST_KEYS if isinstance(answer.get(k), list)), answer
            )
        if not isinstance(answer, list) or len(answer) != len(chunk):
            raise ProviderBadResponse(f"{what} answered no list of {len(chunk)} predictions")
        return [a if isinstance(a, dict) else {"prediction": a} for a in answer]

    async def _chunk(self, chunk: Sequence[Any]) -> list[Any]:
        async with self._slots:
            outputs = await self.guarded(lambda: self._score(chunk))
        return outputs if isinstance(outputs, list) else [outputs] * len(chunk)

    async def predict_batch(self, inputs: Sequence[Any]) -> list[Any]:
        size = self.batch_size
        chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        parts = await asyncio.gather(*(self._chunk(c) for c in chunks))
        return [out for part in parts for out in part]

    async def aclose(self) -> None:
        await self.client.aclose()
