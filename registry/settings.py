"""Settings, read from environment variables (every variable is listed in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings"]


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Where the broker is, how topics are named, and how clients behave.

    ``bootstrap_servers`` empty means "start the embedded broker" for ``up``; library code
    always gets a concrete address.
    """

    bootstrap_servers: str = ""
    topic_prefix: str = ""
    client_id: str = "model-registry"
    data_dir: Path = Path(".model-registry")
    # A fetch on the embedded broker waits its full max wait even when data arrives: keep it
    # small there for the request/reply path (DESIGN.md section 10).
    fetch_max_wait_ms: int = 10
    registry_partitions: int = 1
    prediction_partitions: int = 6
    replication_factor: int = 1
    allow_clear: bool = False
    transactional: bool = False
    security: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``KAFKA_*`` and ``REGISTRY_*`` environment variables."""
        security: dict[str, Any] = {}
        for env, key in (
            ("KAFKA_SECURITY_PROTOCOL", "security_protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl_mechanism"),
            ("KAFKA_SASL_USERNAME", "sasl_plain_username"),
            ("KAFKA_SASL_PASSWORD", "sasl_plain_password"),
        ):
            if os.environ.get(env):
                security[key] = os.environ[env]
        if os.environ.get("KAFKA_SSL_CAFILE"):
            import ssl

            security["ssl_context"] = ssl.create_default_context(cafile=os.environ["KAFKA_SSL_CAFILE"])
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        settings = cls(
            bootstrap_servers=bootstrap,
            topic_prefix=os.environ.get("REGISTRY_TOPIC_PREFIX", ""),
            client_id=os.environ.get("REGISTRY_CLIENT_ID", "model-registry"),
            data_dir=Path(os.environ.get("REGISTRY_DATA_DIR", ".model-registry")),
            fetch_max_wait_ms=_env_int("REGISTRY_FETCH_MAX_WAIT_MS", 10 if not bootstrap else 500),
            registry_partitions=_env_int("REGISTRY_PARTITIONS", 1),
            prediction_partitions=_env_int("REGISTRY_PREDICTION_PARTITIONS", 6),
            replication_factor=_env_int("REGISTRY_REPLICATION_FACTOR", 1),
            allow_clear=_env_bool("REGISTRY_ALLOW_CLEAR"),
            transactional=_env_bool("REGISTRY_TRANSACTIONAL"),
            security=security,
        )
        return replace(settings, **overrides) if overrides else settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def topic(self, name: str) -> str:
        """The full topic name for a logical ``name`` (e.g. ``registry.events``)."""
        return f"{self.topic_prefix}{name}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client."""
        if not self.bootstrap_servers:
            raise ValueError("no Kafka bootstrap address: set KAFKA_BOOTSTRAP_SERVERS or run `model-registry up`")
        return {"bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id, **self.security}

    def __repr__(self) -> str:  # never print SASL passwords
        return (
            f"Settings(bootstrap_servers={self.bootstrap_servers!r}, topic_prefix={self.topic_prefix!r}, "
            f"data_dir={str(self.data_dir)!r})"
        )
