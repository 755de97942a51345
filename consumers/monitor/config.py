"""The monitor's tuning, from ``REGISTRY_MONITOR_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MonitorConfig"]

DAY_S = 86400.0


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


@dataclass(frozen=True)
class MonitorConfig:
    """How much to read per transaction and how long the join window stays open.

    ``join_window_s`` bounds how long a result waits (and is deduplicated) for its outcome;
    ``outcome_ttl_s`` how long an outcome waits for its result before it is dropped and
    counted as expired. Both bound the database's size under any traffic.
    """

    max_records: int = 5000
    poll_timeout_ms: int = 200
    catch_up_poll_ms: int = 50
    outcome_ttl_s: float = 7 * DAY_S
    join_window_s: float = 3 * DAY_S
    expire_every_s: float = 60.0

    @classmethod
    def from_env(cls) -> MonitorConfig:
        """Defaults overridden by ``REGISTRY_MONITOR_MAX_RECORDS``, ``..._OUTCOME_TTL_S``,
        ``..._JOIN_WINDOW_S`` and ``..._EXPIRE_EVERY_S``."""
        return cls(
            max_records=int(_env_float("REGISTRY_MONITOR_MAX_RECORDS", cls.max_records)),
            outcome_ttl_s=_env_float("REGISTRY_MONITOR_OUTCOME_TTL_S", cls.outcome_ttl_s),
            join_window_s=_env_float("REGISTRY_MONITOR_JOIN_WINDOW_S", cls.join_window_s),
            expire_every_s=_env_float("REGISTRY_MONITOR_EXPIRE_EVERY_S", cls.expire_every_s),
        )
