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
"""

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
