"""model-registry: an event-sourced AI model registry (docs/design.md).

The public face of the Python API::

    from model_registry import ModelRegistry, Settings

    async with ModelRegistry(Settings.from_env()) as registry:
        await registry.register({...})

This package is the composition root: it assembles the layers below it (``registry.core``,
``registry.infra``, ``registry.decider``, ``projections``, ``consumers``) into the client
(``client.ModelRegistry``: writes through the decider, reads from the projection), the stack
behind ``model-registry up`` (``stack``), the demo, the JSON Schema export and the whole
command line (``cli``). Nothing below imports it.

The names below are imported when first used (``from model_registry import X`` does it), not
with the package: ``model-registry --help`` would otherwise pay for the whole client.
"""

import typing

if typing.TYPE_CHECKING:  # imported on first use (below): the CLI starts without them
    from model_registry.client import ModelRegistry, WriteResult
    from registry.core.errors import (
        BrokerUnavailable,
        CommandTimeout,
        DecodeError,
        RegistryError,
        Rejected,
        Rejection,
        RejectionCode,
        SecretInConfig,
    )
    from registry.core.types import ModelConfig, ModelType, Provider, Status
    from registry.infra.settings import Settings, SettingsError

__all__ = [
    "BrokerUnavailable",
    "CommandTimeout",
    "DecodeError",
    "ModelConfig",
    "ModelRegistry",
    "ModelType",
    "Provider",
    "RegistryError",
    "Rejected",
    "Rejection",
    "RejectionCode",
    "SecretInConfig",
    "Settings",
    "SettingsError",
    "Status",
    "WriteResult",
]

_HOMES = {
    "ModelRegistry": "model_registry.client",
    "WriteResult": "model_registry.client",
    "BrokerUnavailable": "registry.core.errors",
    "CommandTimeout": "registry.core.errors",
    "DecodeError": "registry.core.errors",
    "RegistryError": "registry.core.errors",
    "Rejected": "registry.core.errors",
    "Rejection": "registry.core.errors",
    "RejectionCode": "registry.core.errors",
    "SecretInConfig": "registry.core.errors",
    "ModelConfig": "registry.core.types",
    "ModelType": "registry.core.types",
    "Provider": "registry.core.types",
    "Status": "registry.core.types",
    "Settings": "registry.infra.settings",
    "SettingsError": "registry.infra.settings",
}


def __getattr__(name: str) -> typing.Any:
    """An exported name, imported from its home on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
