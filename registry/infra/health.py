"""Health judged by progress, not by the process being alive.

Every long-running component keeps ``stats.last_progress_monotonic``: the time of the last
batch it handled or of the last poll that found it caught up. A component whose loop has
stalled (a known failure of stream processors) stops refreshing it and turns unhealthy
after ``stall_after`` seconds, although its process still runs.

``serve_health`` answers ``GET /healthz`` (200 or 503, JSON body) on loopback by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any, Protocol

import orjson

__all__ = ["ComponentHealth", "HasStats", "health_report", "serve_health"]


class HasStats(Protocol):
    stats: Any


class ComponentHealth:
    """The health of one named component."""

    def __init__(self, name: str, component: HasStats, stall_after: float = 30.0) -> None:
        self.name = name
        self.component = component
        self.stall_after = stall_after
        self.task: asyncio.Task[Any] | None = None

    def report(self) -> dict[str, Any]:
        stats = self.component.stats
        if is_dataclass(stats) and not isinstance(stats, type):
            raw = asdict(stats)
        elif hasattr(stats, "__dict__"):
            raw = dict(vars(stats))
        else:
            raw = dict(stats)
        idle = time.monotonic() - float(raw.get("last_progress_monotonic", 0.0))
        crashed = self.task is not None and self.task.done()
        healthy = idle < self.stall_after and not crashed
        out = {
            k: v
            for k, v in raw.items()
            if isinstance(v, int | float | str | bool) and k != "last_progress_monotonic"
        }
        out.update(healthy=healthy, seconds_since_progress=round(idle, 3), crashed=crashed)
        if (
            crashed
            and self.task is not None
            and not self.task.cancelled()
            and self.task.exception()
        ):
            out["error"] = type(self.task.exception()).__name__
        return out


def health_report(components: Mapping[str, ComponentHealth]) -> dict[str, Any]:
    """``{"healthy": bool, "components": {name: report}}``."""
    reports = {name: c.report() for name, c in components.items()}
    return {"healthy": all(r["healthy"] for r in reports.values()), "components": reports}


async def serve_health(
    components: Mapping[str, ComponentHealth], host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """Serve ``GET /healthz`` (and ``/``) with the report; 503 when anything is unhealthy."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readline(), 5)
            report = health_report(components)
            body = orjson.dumps(report, default=str)
            status = "200 OK" if report["healthy"] else "503 Service Unavailable"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
                f"{len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host, port)
