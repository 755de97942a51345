"""Model providers behind one port (``ModelProvider``), built by ``ProviderFactory``.

Adapters, named after their technology: ``sklearn`` (scikit-learn), ``custom``, ``openai``,
``anthropic``, ``azure_ml``, ``sagemaker``, ``frameworks`` (pytorch, tensorflow) and ``mock``
(the configured development fallback). Vendor SDK and httpx types stop at the adapters.

A model's configuration gets only what the operator grants (``GrantSettings``, carried by
every ``ProviderSpec``; docs/security-providers.md): code through ``callables``, model files
through ``files`` (roots and pinned digests), credentials through ``secrets``, hosts through
``hosts``.
"""

from consumers.providers.base import (
    BrokenProvider,
    CallPolicy,
    ModelProvider,
    ProviderSpec,
    RemoteProvider,
)
from consumers.providers.factory import ADAPTERS, ProviderFactory
from consumers.providers.mock import MockProvider, mock_output
from consumers.providers.secrets import Secret, redact, resolve_reference

__all__ = [
    "ADAPTERS",
    "BrokenProvider",
    "CallPolicy",
    "MockProvider",
    "ModelProvider",
    "ProviderFactory",
    "ProviderSpec",
    "RemoteProvider",
    "Secret",
    "mock_output",
    "redact",
    "resolve_reference",
]
