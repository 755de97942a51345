"""The monitor's errors, under the registry's root ``RegistryError``.

::

    RegistryError
     └── MonitorError
          ├── SchemaMismatch      the database was written by another schema version
          └── TestNotFound        no A/B test matches what the report was asked for
"""

from __future__ import annotations

from registry.core.errors import RegistryError

__all__ = ["MonitorError", "SchemaMismatch", "TestNotFound"]


class MonitorError(RegistryError):
    """Root of the monitor's errors."""

    code = "MonitorError"


class SchemaMismatch(MonitorError):
    """The monitor database has another schema version."""

    code = "MonitorSchemaMismatch"


class TestNotFound(MonitorError):
    """No A/B test matches the given champion, challenger or test id."""

    code = "ABTestNotFound"
    __test__ = False  # not a pytest class
