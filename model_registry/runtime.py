"""``runtime.json``: what a running ``model-registry up`` tells the other commands.

``up`` writes it into its data dir (where its broker is, its pid, its ports) and removes it
on a clean stop; a CLI command without ``KAFKA_BOOTSTRAP_SERVERS`` reads it to find the
broker, and so does ``ModelRegistry`` (``find_running``). A file left behind by an ``up``
that was killed names a dead pid and is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from registry.infra.settings import Settings

__all__ = [
    "RUNTIME_FILE",
    "find_running",
    "pid_alive",
    "read_runtime",
    "remove_runtime",
    "write_runtime",
]

RUNTIME_FILE = "runtime.json"


def write_runtime(data_dir: Path, info: dict[str, Any]) -> None:
    (data_dir / RUNTIME_FILE).write_text(json.dumps(info, indent=2))


def remove_runtime(data_dir: Path) -> None:
    (data_dir / RUNTIME_FILE).unlink(missing_ok=True)


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    """What a running ``up`` recorded in ``data_dir``, or None (none, or not running)."""
    try:
        info = json.loads((data_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    return info


def find_running(settings: Settings) -> Settings | None:
    """``settings`` aimed at the stack a running ``up`` recorded in their data dir: its
    broker and topic prefix. ``settings`` unchanged when they name a broker already; None
    when they do not and no ``up`` runs on that data dir."""
    if settings.bootstrap_servers:
        return settings
    info = read_runtime(settings.data_dir)
    if info is None or not info.get("bootstrap_servers"):
        return None
    return settings.with_(
        bootstrap_servers=str(info["bootstrap_servers"]),
        topic_prefix=str(info.get("topic_prefix", settings.topic_prefix)),
    )


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (ours to signal or not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
