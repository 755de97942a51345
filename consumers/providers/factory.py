"""``ProviderFactory``: the provider of a model, chosen by its ``provider`` and ``providerConfig``.

Adapters are imported lazily (an unused SDK costs nothing at start). A provider is kept per
model id and reused while the model's provider-relevant config is unchanged; a changed
config (new version, endpoint, settings...) builds a new one and retires the old, closed at
the next ``collect()``. A provider that cannot be built becomes a ``BrokenProvider`` that
answers every input with the typed failure, so a bad config costs errors, not a crash.

The factory holds the operator's grants (``GrantSettings``; docs/security-providers.md) and
hands them to every provider in its spec: a model's configuration never widens them. Given
the data dir, ``<data_dir>/models`` is a granted model root too (where ``up`` and the demo keep
their model files; the data dir is the operator's, mode 0700).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from consumers.errors import PredictionFailure, ProviderConfigInvalid
from consumers.providers.base import (
    BrokenProvider,
    CallPolicy,
    ModelProvider,
    ProviderSpec,
    as_failure,
)
from consumers.providers.mock import MockProvider
from registry.core.types import ModelConfig, Provider
from registry.infra.settings import GrantSettings

__all__ = ["ADAPTERS", "ProviderFactory"]

log = logging.getLogger(__name__)

ADAPTERS: dict[Provider, str] = {
    Provider.SCIKIT_LEARN: "consumers.providers.sklearn:SklearnProvider",
    Provider.CUSTOM: "consumers.providers.custom:CustomProvider",
    Provider.OPENAI: "consumers.providers.openai:OpenAIProvider",
    Provider.ANTHROPIC: "consumers.providers.anthropic:AnthropicProvider",
    Provider.AZURE_ML: "consumers.providers.azure_ml:AzureMLProvider",
    Provider.AWS_SAGEMAKER: "consumers.providers.sagemaker:SageMakerProvider",
    Provider.PYTORCH: "consumers.providers.frameworks:PyTorchProvider",
    Provider.TENSORFLOW: "consumers.providers.frameworks:TensorFlowProvider",
}
"""Where each provider's adapter lives (``module:class``)."""


def _fingerprint(config: ModelConfig) -> bytes:
    """What a provider depends on: everything but status, metrics, A/B and descriptions."""
    relevant = config.model_dump(
        mode="json",
        include={
            "id",
            "version",
            "type",
            "provider",
            "endpoint",
            "credentials",
            "provider_config",
            "parameters",
        },
    )
    return orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS)


class ProviderFactory:
    """Builds and caches providers; ``get_provider(config)`` is the one way to get one."""

    def __init__(
        self,
        policy: CallPolicy | None = None,
        adapters: Mapping[Provider, str | type[ModelProvider]] | None = None,
        *,
        grants: GrantSettings | None = None,
        data_dir: Path | None = None,
    ) -> None:
        """``grants``: what the operator grants (none but the defaults when omitted);
        ``data_dir``: adds ``<data_dir>/models`` to the granted model roots."""
        self.policy = policy or CallPolicy()
        grants = grants or GrantSettings()
        if data_dir is not None:
            grants = replace(grants, model_roots=(*grants.model_roots, Path(data_dir) / "models"))
        self.grants = grants
        self.adapters: dict[Provider, str | type[ModelProvider]] = {**ADAPTERS, **(adapters or {})}
        self._by_model: dict[str, tuple[ModelConfig, bytes, ModelProvider]] = {}
        self._retired: list[ModelProvider] = []

    def spec_of(self, config: ModelConfig) -> ProviderSpec:
        """The spec a provider of ``config`` gets. Raises ``ProviderConfigInvalid``."""
        pc = config.provider_config
        if pc is not None and pc.provider != config.provider:
            raise ProviderConfigInvalid(
                f"model '{config.id}': provider is {config.provider} "
                f"but providerConfig.provider is {pc.provider}"
            )
        return ProviderSpec.from_config(config, self.policy, self.grants)

    def _adapter(self, provider: Provider) -> type[ModelProvider]:
        target = self.adapters.get(provider)
        if target is None:
            raise ProviderConfigInvalid(f"no adapter for provider {provider}")
        if isinstance(target, str):
            module, _, name = target.partition(":")
            cls: Any = getattr(importlib.import_module(module), name)
            self.adapters[provider] = cls
            return cls  # type: ignore[no-any-return]
        return target

    def create(self, config: ModelConfig) -> ModelProvider:
        """A new provider for ``config`` (a ``BrokenProvider`` when it cannot be built)."""
        try:
            spec = self.spec_of(config)
        except PredictionFailure as invalid:
            return BrokenProvider(
                ProviderSpec(config.id, config.version, config.type, config.provider), invalid
            )
        try:
            return self._adapter(config.provider)(spec)
        except Exception as exc:  # noqa: BLE001 - a bad config must not stop the consumer
            failure = as_failure(exc, spec)
            log.warning(
                "cannot build provider: %s",
                failure.message,
                extra={"model_id": config.id, "code": failure.code},
            )
            return BrokenProvider(spec, failure)

    def get_provider(self, config: ModelConfig) -> ModelProvider:
        """The provider of ``config``: cached while its provider-relevant fields are unchanged."""
        cached = self._by_model.get(config.id)
        if cached is not None and cached[0] is config:
            return cached[2]
        fingerprint = _fingerprint(config)
        if cached is not None and cached[1] == fingerprint:
            self._by_model[config.id] = (config, fingerprint, cached[2])
            return cached[2]
        if cached is not None:
            self._retired.append(cached[2])
        provider = self.create(config)
        self._by_model[config.id] = (config, fingerprint, provider)
        return provider

    def mock(self, config: ModelConfig) -> MockProvider:
        """The mock provider of a model (the configured development fallback)."""
        return MockProvider(ProviderSpec(config.id, config.version, config.type, config.provider))

    async def collect(self) -> None:
        """Close the providers replaced since the last call (none is in use between batches)."""
        retired, self._retired = self._retired, []
        for provider in retired:
            await _close(provider)

    async def aclose(self) -> None:
        """Close every provider."""
        await self.collect()
        providers, self._by_model = [p for _, _, p in self._by_model.values()], {}
        for provider in providers:
            await _close(provider)


async def _close(provider: ModelProvider) -> None:
    try:
        await provider.aclose()
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        log.warning("closing a provider failed: %s", type(exc).__name__)
