"""What each provider needs of its configuration, checked by the decider (docs/security.md).

The prediction consumer's providers (``consumers/providers/*.py``) read their settings from
``providerConfig``; this module is the table of what each reads, kept beside the rules so a
configuration that can never serve is refused when it is registered, released or updated,
not discovered at the first prediction. Only what a provider cannot work without is
required; what depends on the operator's grants (granted code, model roots, hosts, secret
references, pickles) is checked by the consumer, which has them.

``provider_problem(pc, provider, endpoint=..., credentials=...)`` returns the ``Rejection``
(``InvalidCommand``, naming the field) of the first problem, or ``None``:

1. ``providerConfig.provider`` differs from the model's ``provider``;
2. a setting the provider does not read (``callabel``: did you mean ``callable``?), as
   the per-provider ``providerConfig`` schemas refuse it (contract 1.1);
3. a required setting is missing or empty; a known setting has the wrong type (the
   provider would refuse to build);
4. what a provider needs from elsewhere: an endpoint (``azure-ml``), a region
   (``aws-sagemaker``), credential references (``anthropic``, ``azure-ml``,
   ``aws-sagemaker``), taken from ``providerConfig`` or the model's top-level fields, as
   ``ProviderSpec.from_config`` merges them.

A model without ``providerConfig`` is a catalogue entry: nothing is checked (it serves only
through the mock fallback, when the operator configures one).

Pure: no I/O, no imports from ``consumers`` (the core is the bottom layer).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.core.errors import Rejection, RejectionCode, mask_segment
from registry.core.types import Provider, ProviderConfig

__all__ = ["PROVIDER_SETTINGS", "REQUIRED_CREDENTIALS", "Setting", "provider_problem"]


@dataclass(frozen=True, slots=True)
class Setting:
    """A setting a provider reads: its type, as ``ProviderSpec.setting`` checks it
    (``isinstance``: ``True`` passes for an int), or a number as ``ProviderSpec.number``
    checks it (``minimum`` set: no bool, at least ``minimum``)."""

    kind: type | tuple[type, ...] = str
    required: bool = False
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this setting (``None``: nothing)."""
        if self.minimum is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"must be a number >= {self.minimum:g}"
            if value < self.minimum:
                return f"must be a number >= {self.minimum:g}"
            return None
        if value is None:
            return None
        if not isinstance(value, self.kind):
            return f"must be {_KIND_NAMES.get(self.kind, 'of another type')}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(repr(c) for c in self.choices)}"
        return None


_KIND_NAMES: dict[type | tuple[type, ...], str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    list: "a list",
    (int, float): "a number",
    (dict, list): "a mapping of feature to value, or a list in column order",
}

_TEXT = Setting(str)
_REQUIRED_TEXT = Setting(str, required=True)
_FLAG = Setting(bool)
_COUNT = Setting(int)
_NUMBER = Setting((int, float))

POLICY_SETTINGS: dict[str, Setting] = {
    "timeoutS": Setting(minimum=0.001),
    "retries": Setting(minimum=0),
    "retryBackoffS": Setting(minimum=0),
    "maxConcurrency": Setting(minimum=1),
    "breakerThreshold": Setting(minimum=1),
    "breakerCooldownS": Setting(minimum=0),
}
"""Every provider's call policy overrides (``ProviderSpec._with_policy_overrides``)."""

_MODEL_FILE: dict[str, Setting] = {
    "modelPath": _REQUIRED_TEXT,
    "modelSha256": _REQUIRED_TEXT,
    "features": Setting(list),
}

PROVIDER_SETTINGS: dict[Provider, dict[str, Setting]] = {
    Provider.CUSTOM: {"callable": _REQUIRED_TEXT, "batch": _FLAG},
    Provider.SCIKIT_LEARN: {**_MODEL_FILE, "explainBaseline": Setting((dict, list))},
    Provider.PYTORCH: {**_MODEL_FILE, "architecture": _TEXT},
    Provider.TENSORFLOW: _MODEL_FILE,
    Provider.OPENAI: {
        "model": _REQUIRED_TEXT,
        "api": Setting(str, choices=("chat", "embeddings")),
        "systemPrompt": _TEXT,
        "temperature": _NUMBER,
        "maxTokens": _COUNT,
        "maxOutput": _COUNT,
        "parseJson": _FLAG,
        "baseUrl": _TEXT,
    },
    Provider.ANTHROPIC: {
        "model": _REQUIRED_TEXT,
        "maxTokens": _COUNT,
        "maxOutput": _COUNT,
        "systemPrompt": _TEXT,
        "temperature": _NUMBER,
        "apiVersion": _TEXT,
        "parseJson": _FLAG,
    },
    Provider.AZURE_ML: {
        "deployment": _TEXT,
        "inputKey": _TEXT,
        "batchSize": Setting(minimum=1),
    },
    Provider.AWS_SAGEMAKER: {
        "endpointName": _REQUIRED_TEXT,
        "region": _TEXT,
        "contentType": _TEXT,
        "accept": _TEXT,
        "targetModel": _TEXT,
        "targetVariant": _TEXT,
    },
}
"""The ``providerConfig`` settings each provider reads (besides ``POLICY_SETTINGS``)."""

REQUIRED_CREDENTIALS: dict[Provider, tuple[tuple[str, ...], ...]] = {
    Provider.ANTHROPIC: (("apiKey",),),
    Provider.AZURE_ML: (("apiKey", "key"),),
    Provider.AWS_SAGEMAKER: (("accessKeyId",), ("secretAccessKey",)),
}
"""Credential references a provider resolves at every call (one name of each group)."""

_FIELDS = ("provider", "endpoint", "credentials")
_SIMILAR = 0.8  # difflib ratio above which an unknown key is taken for a misspelling


def _reject(message: str, field: str) -> Rejection:
    return Rejection(RejectionCode.INVALID_COMMAND, message, field)


def provider_problem(
    pc: ProviderConfig | None,
    provider: Provider | str | None = None,
    *,
    endpoint: str | None = None,
    credentials: Mapping[str, str] | None = None,
) -> Rejection | None:
    """Why ``pc`` can never serve a model of ``provider`` (the model's top-level provider),
    or ``None``. ``endpoint`` and ``credentials`` are the model's top-level ones (the
    providers fall back on them)."""
    if pc is None:
        return None
    if provider is not None and Provider(provider) is not pc.provider:
        return _reject(
            f"providerConfig.provider is {pc.provider} but the model's provider is "
            f"{Provider(provider)}; they must be the same.",
            "providerConfig.provider",
        )
    known = PROVIDER_SETTINGS.get(pc.provider, {})
    settings = pc.settings
    return (
        _unknown_setting(pc, known, settings)
        or _settings_problem(pc.provider, known, settings)
        or _needs_problem(pc, settings, endpoint, credentials)
    )


def _unknown_setting(
    pc: ProviderConfig, known: Mapping[str, Setting], settings: Mapping[str, Any]
) -> Rejection | None:
    """The first setting ``pc``'s provider does not read: refused, as the schema refuses it
    (a misspelling would otherwise register and fail every prediction). A near miss names
    the setting meant; a name that looks like a secret is not echoed."""
    names = [*known, *POLICY_SETTINGS, *_FIELDS]
    lowered = {n.lower(): n for n in names}
    for key in settings:
        if key in known or key in POLICY_SETTINGS:
            continue
        if mask_segment(key) != key:
            return _reject(
                f"providerConfig holds a setting that {pc.provider} models do not read.",
                "providerConfig",
            )
        suggestion = lowered.get(key.lower())
        if suggestion is None:
            close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=_SIMILAR)
            suggestion = lowered[close[0]] if close else None
        hint = (
            f"did you mean {suggestion}?"
            if suggestion is not None
            else f"{pc.provider} models read: {', '.join(sorted(names))}."
        )
        return _reject(
            f"providerConfig.{key} is not a setting of {pc.provider} models; {hint}",
            f"providerConfig.{key}",
        )
    return None


def _settings_problem(
    provider: Provider, known: Mapping[str, Setting], settings: Mapping[str, Any]
) -> Rejection | None:
    for name, setting in known.items():
        value = settings.get(name)
        if setting.required and (value is None or value == ""):
            return _reject(_missing(provider, name), f"providerConfig.{name}")
    for table in (known, POLICY_SETTINGS):
        for name, setting in table.items():
            if name not in settings:
                continue
            wrong = setting.problem(settings[name])
            if wrong:
                return _reject(f"providerConfig.{name} {wrong}.", f"providerConfig.{name}")
    path = settings.get("modelPath")
    if isinstance(path, str) and ("\0" in path or ".." in path.replace("\\", "/").split("/")):
        return _reject(
            "providerConfig.modelPath may not hold a '..' part: name the file under a "
            "granted model root.",
            "providerConfig.modelPath",
        )
    return None


_WHAT = {
    "callable": "the granted function that predicts (an entry point's name or "
    "'package.module:function')",
    "modelPath": "the model file, under a granted model root",
    "modelSha256": "a model file loads only with its SHA-256 pinned (sha256sum of the file, "
    "64 lowercase hex digits)",
    "model": "the vendor's model name, e.g. 'gpt-4o-mini' or 'claude-sonnet-4-5'",
    "endpointName": "the SageMaker endpoint's name",
}


def _missing(provider: Provider, name: str) -> str:
    what = _WHAT.get(name)
    return f"{provider} models need providerConfig.{name}" + (f": {what}." if what else ".")


def _needs_problem(
    pc: ProviderConfig,
    settings: Mapping[str, Any],
    endpoint: str | None,
    credentials: Mapping[str, str] | None,
) -> Rejection | None:
    provider = pc.provider
    creds = {**(credentials or {}), **(pc.credentials or {})}
    if provider is Provider.AZURE_ML and not (pc.endpoint or endpoint):
        return _reject(
            "azure-ml models need the endpoint's scoring URI: providerConfig.endpoint "
            "(or the model's endpoint).",
            "providerConfig.endpoint",
        )
    if provider is Provider.AWS_SAGEMAKER:
        region = creds.get("region") or settings.get("region")
        if not isinstance(region, str) or not region:
            return _reject(
                "aws-sagemaker models need a region: providerConfig.region or credentials.region.",
                "providerConfig.region",
            )
    for group in REQUIRED_CREDENTIALS.get(provider, ()):
        if not any(creds.get(name) for name in group):
            names = " or ".join(f"credentials.{n}" for n in group)
            return _reject(
                f"{provider} models need {names}: a reference such as "
                f"'env:MODEL_SECRET_{group[0].upper()}' (providerConfig.credentials or the "
                "model's credentials).",
                f"providerConfig.credentials.{group[0]}",
            )
    return None
