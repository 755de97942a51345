"""Value types of the registry: the spec's ``ModelConfig`` made strict.

Wire names are the spec's camelCase (``providerConfig``, ``f1Score``); Python names are
snake_case. Both are accepted on input; output uses camelCase.

Invariants enforced here, at the edge:

- ``version`` is a semantic version (``SemVer``), ordered by semver precedence;
- metrics percentages lie in 0-100, errors are >= 0;
- ``credentials`` hold references (``env:NAME``, ``file:/abs/path``), never a raw secret;
  nor may a secret hide under a secret-looking key of ``providerConfig``/``parameters``
  or in an endpoint URL's user-info. The error names the field, never the value.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from functools import total_ordering
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from registry.core.errors import SecretInConfig, mask_segment

__all__ = [
    "ABMode",
    "ABTestConfig",
    "ALIAS_PATTERN",
    "Guardrails",
    "MODEL_ID_PATTERN",
    "Metrics",
    "ModelConfig",
    "ModelType",
    "Provider",
    "ProviderConfig",
    "Routing",
    "SECRET_KEY",
    "SEMVER",
    "SemVer",
    "Status",
    "WireModel",
    "CredentialRefs",
    "check_config_secrets",
    "check_credentials",
    "check_endpoint",
    "is_secret_reference",
    "mask_segment",
    "scan_for_secrets",
]

MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}@[A-Za-z0-9][A-Za-z0-9._-]{0,27}$"
"""A stable name (``lead-scoring@production``): the ``@`` keeps it apart from every model id."""
Routing = Literal["hash", "random"]
ABMode = Literal["split", "shadow"]
"""``split``: the challenger answers its share of requests. ``shadow``: it gets a mirrored copy
of its share of the champion's requests; its results are compared, never returned."""
"""How an A/B test splits traffic: by unit id (sticky) or by request id (random per request)."""


class ModelType(StrEnum):
    """Model category (spec 2.2)."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CLUSTERING = "clustering"
    NLP = "nlp"
    RECOMMENDATION = "recommendation"
    FORECASTING = "forecasting"


class Provider(StrEnum):
    """Framework or service hosting the model (spec 2.3)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    AWS_SAGEMAKER = "aws-sagemaker"
    AZURE_ML = "azure-ml"
    CUSTOM = "custom"
    SCIKIT_LEARN = "scikit-learn"
    TENSORFLOW = "tensorflow"
    PYTORCH = "pytorch"


class Status(StrEnum):
    """Lifecycle status (spec 1.1). ``unregistered`` is the end state after deregistration."""

    TRAINING = "training"
    TESTING = "testing"
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    UNREGISTERED = "unregistered"

    @property
    def serves(self) -> bool:
        """Only ``active`` models serve predictions."""
        return self is Status.ACTIVE


# --------------------------------------------------------------------------- semver

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@total_ordering
class SemVer:
    """A parsed semantic version, ordered by semver 2.0 precedence (build metadata ignored)."""

    __slots__ = ("major", "minor", "patch", "prerelease", "build", "_key")

    def __init__(self, text: str) -> None:
        m = SEMVER.match(text)
        if m is None:
            # The text is not quoted: replies and dead letters never echo what was sent.
            raise ValueError("not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        self.major, self.minor, self.patch = int(m[1]), int(m[2]), int(m[3])
        self.prerelease: tuple[str, ...] = tuple(m[4].split(".")) if m[4] else ()
        self.build = m[5] or ""
        # A release ranks above any of its pre-releases; numeric identifiers rank below
        # alphanumeric ones and compare numerically.
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        self._key = (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemVer) and self._key == other._key

    def __lt__(self, other: SemVer) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"SemVer('{self}')"

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text


def _check_semver(value: str) -> str:
    SemVer(value)
    return value


SemVerStr = Annotated[
    str,
    AfterValidator(_check_semver),
    Field(json_schema_extra={"pattern": SEMVER.pattern, "description": "A semantic version."}),
]


# --------------------------------------------------------------------------- secrets

_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_FILE_REF = re.compile(r"^file:/[^\0]+$")
SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|credential|auth)",
    re.IGNORECASE,
)
# Keys that may appear inside ``credentials`` with a plain value: they locate, not unlock.
NON_SECRET_CREDENTIAL_KEYS = frozenset({"region", "apiVersion", "api_version", "service"})
# Setting names that look secret to the pattern above but are not.
NON_SECRET_SETTING_KEYS = frozenset({"tokenizer", "authType", "auth_type", "authMode", "auth_mode"})


def is_secret_reference(value: object) -> bool:
    """True when ``value`` is a reference to a secret (``env:NAME`` / ``file:/path``)."""
    return isinstance(value, str) and bool(_ENV_REF.match(value) or _FILE_REF.match(value))


def check_credentials(field: str, creds: dict[str, Any]) -> None:
    """Refuse any credential value that is not a reference (bar the locating keys)."""
    for key, value in creds.items():
        if key in NON_SECRET_CREDENTIAL_KEYS and isinstance(value, str):
            continue
        if not is_secret_reference(value):
            raise SecretInConfig(f"{field}.{mask_segment(key)}")


def scan_for_secrets(field: str, value: Any) -> None:
    """Refuse raw values under secret-looking keys anywhere in a nested mapping."""
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{field}.{mask_segment(key)}"
            if isinstance(key, str) and SECRET_KEY.search(key) and not isinstance(inner, dict):
                # Secrets are strings: a number or flag under e.g. ``maxTokens`` is a setting.
                if (
                    isinstance(inner, str)
                    and key not in NON_SECRET_SETTING_KEYS
                    and not is_secret_reference(inner)
                ):
                    raise SecretInConfig(path)
            else:
                scan_for_secrets(path, inner)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            scan_for_secrets(f"{field}[{i}]", inner)


def _references_only(value: Any) -> Any:
    if isinstance(value, dict):
        check_credentials("credentials", value)
    return value


CredentialRefs = Annotated[dict[str, str], BeforeValidator(_references_only)]
"""A ``credentials`` mapping: every value a reference (``env:NAME``, ``file:/path``)."""


def check_config_secrets(endpoint: str | None, parameters: dict[str, Any] | None) -> None:
    """The checks a config (or a change to one) makes of its endpoint and parameters."""
    check_endpoint("endpoint", endpoint)
    if parameters:
        scan_for_secrets("parameters", parameters)


_URL_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*@")


def check_endpoint(field: str, value: str | None) -> None:
    """Refuse an endpoint URL that carries user-info (a password in the URL)."""
    if value is not None and _URL_USERINFO.match(value):
        raise SecretInConfig(field)


# --------------------------------------------------------------------------- wire models


class WireModel(BaseModel):
    """Base of payload types: frozen, camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        use_enum_values=False,
    )

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON-ready mapping, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


Percent = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]


class Metrics(WireModel):
    """Evaluation metrics (spec 6): percentages 0-100, errors >= 0."""

    accuracy: Percent | None = None
    precision: Percent | None = None
    recall: Percent | None = None
    f1_score: Percent | None = None
    mse: NonNegative | None = None
    mae: NonNegative | None = None


class ProviderConfig(WireModel):
    """Provider configuration (spec 3). Provider-specific settings are kept as extra fields."""

    model_config = ConfigDict(
        frozen=True, extra="allow", populate_by_name=True, alias_generator=to_camel
    )

    provider: Provider
    endpoint: str | None = None
    credentials: dict[str, str] | None = None

    @model_validator(mode="after")
    def _no_secrets(self) -> ProviderConfig:
        check_endpoint("providerConfig.endpoint", self.endpoint)
        if self.credentials:
            check_credentials("providerConfig.credentials", self.credentials)
        scan_for_secrets("providerConfig", dict(self.model_extra or {}))
        return self

    @property
    def settings(self) -> dict[str, Any]:
        """The provider-specific settings (everything but provider/endpoint/credentials)."""
        return dict(self.model_extra or {})


class Guardrails(WireModel):
    """Limits a running test keeps, watched by the monitor (docs/monitor.md#guardrails).

    A limit trips only when it is crossed with statistical confidence (the sequential
    intervals) after ``min_samples`` challenger requests; the monitor then sends ``action``
    as its own authenticated actor. ``promote_when_better``: the monitor promotes the
    challenger once it is significantly better and no limit is crossed.
    """

    max_error_rate: Annotated[float, Field(ge=0, le=100)] | None = None
    """The challenger's error rate, in percent."""
    max_latency_p99_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    srm_p_value: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Trip on a sample-ratio mismatch whose p-value is below this."""
    min_quality_delta: Annotated[float, Field(ge=0, le=100)] | None = None
    """Trip when the challenger's quality is worse than the champion's by more than this."""
    min_samples: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    action: Literal["stop", "zero_traffic"] = "zero_traffic"
    promote_when_better: bool = False


class ABTestConfig(WireModel):
    """Champion/challenger configuration carried by the challenger (spec 5)."""

    enabled: bool = True
    traffic_percentage: Annotated[float, Field(ge=0, le=100)]
    champion_model_id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    routing: Routing = "hash"
    mode: ABMode | None = None
    """``shadow`` for a shadow test (absent: a split test)."""
    guardrails: Guardrails | None = None


class ModelConfig(WireModel):
    """One model of the catalogue (spec 2.1)."""

    id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: SemVerStr
    type: ModelType
    provider: Provider
    description: Annotated[str, Field(max_length=5000)] = ""
    endpoint: str | None = None
    credentials: CredentialRefs | None = None
    provider_config: ProviderConfig | None = None
    parameters: dict[str, Any] | None = None
    metrics: Metrics | None = None
    last_trained: datetime | None = None
    status: Status = Status.TRAINING
    ab_test: ABTestConfig | None = None

    @model_validator(mode="after")
    def _no_secrets(self) -> ModelConfig:
        check_config_secrets(self.endpoint, self.parameters)
        return self

    @property
    def semver(self) -> SemVer:
        """The parsed version."""
        return SemVer(self.version)
