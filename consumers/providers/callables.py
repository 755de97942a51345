"""The code a model may name: only what the operator installed or listed.

A model names code by ``providerConfig.callable`` (``custom``) or ``providerConfig.architecture``
(``pytorch``). It resolves through the operator's allow-list only, in this order:

1. an entry point of the ``model_registry.callables`` group, by its name (``lead-rules``) or
   by the ``module:attr`` it points at: installing a package that declares one is the grant;
2. an exact ``module:function`` listed in ``grants.callables`` (``REGISTRY_GRANTS_CALLABLES``).

Anything else is refused with ``ProviderConfigInvalid`` before anything is imported: no
module a model names is imported unless the operator granted it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from consumers.errors import ProviderConfigInvalid
from registry.infra.grants import CALLABLES_GROUP, callable_entry_point
from registry.infra.settings import GrantSettings

__all__ = ["granted_callable"]

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def granted_callable(label: str, setting: str, target: str, grants: GrantSettings) -> Any:
    """The object ``target`` names, when the operator granted it.

    ``setting`` names the providerConfig field in messages. Raises ``ProviderConfigInvalid``:
    malformed, not granted (nothing imported then), not importable, or not callable.
    """
    if not (_TARGET.match(target) or _ENTRY_NAME.match(target)):
        raise ProviderConfigInvalid(
            f"{label}: providerConfig.{setting} must look like 'package.module:function' "
            "or name an entry point"
        )
    ep = callable_entry_point(target)
    if ep is not None:
        try:
            obj: Any = ep.load()
        except Exception as exc:  # noqa: BLE001 - an installed plugin that fails to import
            raise ProviderConfigInvalid(
                f"{label}: entry point {ep.name} cannot be loaded ({type(exc).__name__})"
            ) from None
    elif target in grants.callables and _TARGET.match(target):
        obj = _import(label, target)
    else:
        raise ProviderConfigInvalid(
            f"{label}: providerConfig.{setting} {target!r} is not granted (the operator "
            f"installs it as an entry point of '{CALLABLES_GROUP}' or lists it in "
            "REGISTRY_GRANTS_CALLABLES)"
        )
    if not callable(obj):
        raise ProviderConfigInvalid(f"{label}: {target} is not callable")
    return obj


def _import(label: str, target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ProviderConfigInvalid(
            f"{label}: cannot import {module_name} ({type(exc).__name__})"
        ) from None
    except AttributeError:
        raise ProviderConfigInvalid(f"{label}: {module_name} has no attribute {attr}") from None
    return obj  # type: ignore[no-any-return]
