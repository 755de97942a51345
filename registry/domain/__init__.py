"""The registry's domain: value types, messages and the pure rules. No I/O here."""

from registry.domain.errors import (
    BrokerUnavailable,
    CommandTimeout,
    DecodeError,
    RegistryError,
    Rejected,
    Rejection,
    RejectionCode,
    SecretInConfig,
)
from registry.domain.messages import *  # noqa: F403
from registry.domain.rules import (
    LEGAL_TRANSITIONS,
    ActiveABTest,
    ModelState,
    RegistryState,
    RevisionGap,
    ab_test_id,
    decide,
    evolve,
)
from registry.domain.types import (
    ABTestConfig,
    Metrics,
    ModelConfig,
    ModelType,
    Provider,
    ProviderConfig,
    SemVer,
    Status,
    is_secret_reference,
)
