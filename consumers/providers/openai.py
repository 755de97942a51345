"""openai: the OpenAI API through the official ``openai`` SDK.

Settings: ``model`` (required), ``api`` (``chat``, the default, or ``embeddings``),
``systemPrompt``, ``temperature``, ``maxOutput`` (``max_tokens``), ``parseJson`` (parse
the answer text as JSON: the output is then that value). ``endpoint`` (or ``baseUrl``)
points the SDK at any OpenAI-compatible server. ``credentials.apiKey`` is a reference that
the SDK's key provider resolves at every request; without it the SDK sends a placeholder
(for local servers that need no key). Hosts: ``api.openai.com`` (https) and
``grants.hosts`` only: the SDK gets our httpx client, which checks every request and
connection (docs/security-providers.md).

Output: chat ``{"prediction": text, "model", "finishReason", "usage"}``; embeddings
``{"embedding": [...], "model"}``. The SDK's own retries are off: the call policy retries.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson

from consumers.errors import (
    PredictionFailure,
    ProviderBadResponse,
    ProviderConfigInvalid,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from consumers.providers.base import ProviderSpec, RemoteProvider
from consumers.providers.http import TRANSIENT_STATUSES, host_policy, make_client, prompt_of
from consumers.providers.secrets import redact

__all__ = ["DEFAULT_HOSTS", "OpenAIProvider", "map_openai_error"]

_PLACEHOLDER_KEY = "no-key-configured"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_HOSTS = ("api.openai.com:443",)
"""Hosts an OpenAI model may call ungranted (https only)."""


def map_openai_error(exc: openai.OpenAIError, what: str) -> PredictionFailure:
    """The typed failure of an SDK error, most specific first; the message is redacted."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, PredictionFailure):  # e.g. HostNotAllowed from our transport
        return cause
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{what} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(f"{what} unreachable")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"{what} answered HTTP {status}: {redact(str(exc.message))[:200]}"
        if status >= 500 or status in TRANSIENT_STATUSES:
            return ProviderUnavailable(detail)
        return ProviderRejected(detail)
    return ProviderBadResponse(f"{what}: {type(exc).__name__}")


class OpenAIProvider(RemoteProvider):
    """Chat completions (or embeddings) per input."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.model: str = spec.setting("model")
        self.api: str = spec.setting("api", "chat")
        if self.api not in {"chat", "embeddings"}:
            raise ProviderConfigInvalid(
                f"{spec.label}: providerConfig.api must be 'chat' or 'embeddings'"
            )
        self.system: str | None = spec.setting("systemPrompt", None)
        self.temperature: float | None = spec.setting("temperature", None, (int, float))
        self.max_tokens: int | None = spec.setting("maxTokens", None, int) or spec.setting(
            "maxOutput", None, int
        )
        self.parse_json: bool = spec.setting("parseJson", False, bool)
        base_url = spec.endpoint or spec.setting("baseUrl", None) or DEFAULT_BASE_URL
        hosts = host_policy(spec, DEFAULT_HOSTS)
        hosts.check_url(base_url)
        self.http = make_client(spec, hosts)
        self.client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=base_url,
            timeout=spec.policy.timeout_s,
            max_retries=0,
            http_client=self.http,  # type: ignore[arg-type] # the SDK takes httpx clients too
        )

    async def _api_key(self) -> str:
        secret = self.spec.credential("apiKey", required=False)
        return secret.reveal() if secret is not None else _PLACEHOLDER_KEY

    async def predict_one(self, value: Any) -> Any:
        what = f"OpenAI ({self.model})"
        try:
            if self.api == "embeddings":
                return await self._embed(value)
            return await self._chat(value)
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, what) from None

    async def _chat(self, value: Any) -> Any:
        prompt = prompt_of(value)
        messages: list[Any] = (
            [] if self.system is None else [{"role": "system", "content": self.system}]
        )
        messages += prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        response = await self.client.chat.completions.create(
            model=self.model, messages=messages, **kwargs
        )
        if not response.choices:
            raise ProviderBadResponse(f"OpenAI ({self.model}) answered no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        if self.parse_json:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ProviderBadResponse(
                    f"OpenAI ({self.model}) answered text that is not JSON"
                ) from None
        usage = response.usage.model_dump() if response.usage is not None else None
        return {
            "prediction": text,
            "model": response.model,
            "finishReason": choice.finish_reason,
            "usage": usage,
        }

    async def _embed(self, value: Any) -> Any:
        text = prompt_of(value)
        if isinstance(text, list):
            text = orjson.dumps(text).decode()
        response = await self.client.embeddings.create(model=self.model, input=text)
        if not response.data:
            raise ProviderBadResponse(f"OpenAI ({self.model}) answered no embedding")
        return {"embedding": list(response.data[0].embedding), "model": response.model}

    async def aclose(self) -> None:
        await self.client.close()
        await self.http.aclose()
