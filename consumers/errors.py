"""Why a prediction failed: one root, a subclass per failure mode, each with a stable ``code``.

::

    RegistryError
     └── PredictionFailure               (code, transient)
          ├── InvalidRequest             unreadable request (also sent to the DLQ)
          ├── ModelNotFound              no such model in the registry view
          ├── ModelNotActive             the model exists but does not serve (not ``active``)
          ├── InvalidInput               the input does not fit the model (missing feature...)
          ├── ProviderTimeout            the call did not finish in time       (transient)
          ├── ProviderUnavailable        connection error, 5xx, 429             (transient)
          ├── ProviderRejected           the provider refused the call (4xx)
          ├── ProviderBadResponse        the provider answered something unreadable
          ├── ProviderNotInstalled       an optional framework (torch, tensorflow) is missing
          ├── ProviderConfigInvalid      providerConfig lacks or garbles a setting, or names
          │    │                         code, a file or a credential the operator did not grant
          │    └── HostNotAllowed        the endpoint's host (or an address it resolves to) is
          │                              not on the provider's allow-list: nothing was sent
          ├── CredentialUnavailable      a credential reference could not be resolved
          └── ProviderFailed             anything else the provider raised

Results carry ``{"code": ..., "message": ...}``; callers branch on the code, never the text.
Messages never contain a resolved secret: providers build them from status codes and
redacted vendor text (``consumers.providers.secrets.redact``).
"""

from __future__ import annotations

from typing import ClassVar

from registry.core.errors import RegistryError
from registry.core.predictions import PredictionErrorCode

__all__ = [
    "CredentialUnavailable",
    "HostNotAllowed",
    "InvalidInput",
    "InvalidRequest",
    "ModelNotActive",
    "ModelNotFound",
    "PredictionErrorCode",
    "PredictionFailure",
    "ProviderBadResponse",
    "ProviderConfigInvalid",
    "ProviderFailed",
    "ProviderNotInstalled",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
]


class PredictionFailure(RegistryError):
    """A prediction that could not be made. ``transient`` failures are worth a retry."""

    error_code: ClassVar[PredictionErrorCode] = PredictionErrorCode.PROVIDER_FAILED
    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = str(self.error_code)

    def as_dict(self) -> dict[str, str]:
        """The ``error`` object of a result."""
        return {"code": self.code, "message": self.message}


class InvalidRequest(PredictionFailure):
    error_code = PredictionErrorCode.INVALID_REQUEST


class ModelNotFound(PredictionFailure):
    error_code = PredictionErrorCode.MODEL_NOT_FOUND


class ModelNotActive(PredictionFailure):
    error_code = PredictionErrorCode.MODEL_NOT_ACTIVE


class InvalidInput(PredictionFailure):
    error_code = PredictionErrorCode.INVALID_INPUT


class ProviderTimeout(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_TIMEOUT
    transient = True


class ProviderUnavailable(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_UNAVAILABLE
    transient = True


class ProviderRejected(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_REJECTED


class ProviderBadResponse(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_BAD_RESPONSE


class ProviderNotInstalled(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_NOT_INSTALLED


class ProviderConfigInvalid(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_CONFIG_INVALID


class HostNotAllowed(ProviderConfigInvalid):
    """The endpoint names a host the operator did not grant (docs/security-providers.md).

    Raised before any byte is sent; the message names the host, never a credential.
    """

    error_code = PredictionErrorCode.HOST_NOT_ALLOWED


class CredentialUnavailable(PredictionFailure):
    error_code = PredictionErrorCode.CREDENTIAL_UNAVAILABLE


class ProviderFailed(PredictionFailure):
    error_code = PredictionErrorCode.PROVIDER_FAILED
