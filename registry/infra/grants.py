"""Which code the operator granted to models (docs/security.md#the-operators-grants).

A model names code by ``providerConfig.callable`` (``custom``) or
``providerConfig.architecture`` (``pytorch``). It is granted when it names an entry point of
the ``model_registry.callables`` group (by its name, or by the ``module:attr`` it points at:
installing a package that declares one is the grant), or is an exact ``module:function``
listed in ``REGISTRY_GRANTS_CALLABLES``. The decider refuses a registration naming anything
else; the prediction consumer checks again before it imports anything.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from registry.infra.settings import GrantSettings

__all__ = ["CALLABLES_GROUP", "CODE_SETTINGS", "callable_entry_point", "callable_granted"]

CALLABLES_GROUP = "model_registry.callables"
"""The entry-point group whose members any model may name."""
CODE_SETTINGS = ("callable", "architecture")
"""The providerConfig settings that name code."""


def callable_entry_point(target: str) -> EntryPoint | None:
    """The installed entry point ``target`` names (by name or by ``module:attr``)."""
    for ep in entry_points(group=CALLABLES_GROUP):
        if target in (ep.name, f"{ep.module}:{ep.attr}"):
            return ep
    return None


def callable_granted(target: str, grants: GrantSettings) -> bool:
    """Did the operator grant the code ``target`` names?"""
    return target in grants.callables or callable_entry_point(target) is not None
