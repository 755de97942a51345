"""anthropic: the Anthropic Messages API (``POST /v1/messages``) over httpx.

Settings: ``model`` (required), ``maxTokens`` or ``maxOutput`` (the call's ``max_tokens``,
default 256),
``systemPrompt``, ``temperature``, ``apiVersion`` (the ``anthropic-version`` header,
default 2023-06-01), ``parseJson``. ``endpoint`` is the API base (default https://api.anthropic.com).
``credentials.apiKey`` is a reference, resolved per call into the ``x-api-key`` header.
Hosts: ``api.anthropic.com`` (https) and ``grants.hosts`` only (docs/security-providers.md).

Output: ``{"prediction": text, "model", "stopReason", "usage"}``. 429, 5xx and 529
(overloaded) are transient and retried by the call policy.
"""

from __future__ import annotations

from typing import Any

import orjson

from consumers.errors import ProviderBadResponse
from consumers.providers.base import ProviderSpec, RemoteProvider
from consumers.providers.http import host_policy, make_client, post_json, prompt_of

__all__ = ["DEFAULT_HOSTS", "AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_HOSTS = ("api.anthropic.com:443",)
"""Hosts an Anthropic model may call ungranted (https only)."""
DEFAULT_API_VERSION = "2023-06-01"


class AnthropicProvider(RemoteProvider):
    """One Messages API call per input."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.model: str = spec.setting("model")
        self.max_tokens: int = spec.setting("maxTokens", None, int) or spec.setting(
            "maxOutput", 256, int
        )
        self.system: str | None = spec.setting("systemPrompt", None)
        self.temperature: float | None = spec.setting("temperature", None, (int, float))
        self.api_version: str = spec.setting("apiVersion", DEFAULT_API_VERSION)
        self.parse_json: bool = spec.setting("parseJson", False, bool)
        self.url = (spec.endpoint or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        hosts = host_policy(spec, DEFAULT_HOSTS)
        hosts.check_url(self.url)
        self.client = make_client(spec, hosts)

    def _body(self, value: Any) -> bytes:
        prompt = prompt_of(value)
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
        }
        if self.system is not None:
            body["system"] = self.system
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return orjson.dumps(body)

    async def predict_one(self, value: Any) -> Any:
        what = f"Anthropic ({self.model})"
        body = self._body(value)
        key = self.spec.credential("apiKey")
        assert key is not None  # required=True
        headers = {
            "x-api-key": key.reveal(),
            "anthropic-version": self.api_version,
            "content-type": "application/json",
            "accept": "application/json",
        }
        answer = await post_json(self.client, self.url, body, headers, what)
        return self._output(answer, what)

    def _output(self, answer: Any, what: str) -> Any:
        blocks = answer.get("content") if isinstance(answer, dict) else None
        if not isinstance(blocks, list):
            raise ProviderBadResponse(f"{what} answered no content blocks")
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        if self.parse_json:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ProviderBadResponse(f"{what} answered text that is not JSON") from None
        return {
            "prediction": text,
            "model": answer.get("model"),
            "stopReason": answer.get("stop_reason"),
            "usage": answer.get("usage"),
        }

    async def aclose(self) -> None:
        await self.client.aclose()
