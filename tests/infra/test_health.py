"""Health is judged by progress: a stalled loop is unhealthy while its process lives on."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from registry.infra.health import ComponentHealth, health_report, serve_health
from tests.helpers import eventually


@dataclass
class _Stats:
    events_applied: int = 0
    last_progress_monotonic: float = field(default_factory=time.monotonic)


class _Loop:
    """A component whose loop refreshes its progress until it is told to stall."""

    def __init__(self) -> None:
        self.stats = _Stats()
        self.stalled = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self.stalled:
                self.stats.events_applied += 1
                self.stats.last_progress_monotonic = time.monotonic()
            await asyncio.sleep(0.01)


async def test_a_stalled_loop_turns_unhealthy_and_a_crash_is_reported() -> None:
    loop = _Loop()
    stop = asyncio.Event()
    health = ComponentHealth("projector", loop, stall_after=0.2)
    health.task = asyncio.create_task(loop.run(stop))
    server = await serve_health({"projector": health})
    port = server.sockets[0].getsockname()[1]

    async def get() -> tuple[str, dict[str, object]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await reader.read()
        writer.close()
        head, body = raw.split(b"\r\n\r\n", 1)
        return head.split(b"\r\n")[0].decode(), json.loads(body)

    def healthy() -> bool:
        return bool(health_report({"projector": health})["healthy"])

    try:
        await eventually(lambda: loop.stats.events_applied > 0)
        status, body = await get()
        assert status.endswith("200 OK")
        assert body["healthy"] is True
        loop.stalled = True  # the task is alive, but makes no progress
        await eventually(lambda: not healthy(), timeout=5)
        status, body = await get()
        assert status.endswith("503 Service Unavailable")
        assert body["components"]["projector"]["crashed"] is False  # type: ignore[index]
        loop.stalled = False
        await eventually(healthy, timeout=5)
        stop.set()
        await health.task
        assert health_report({"projector": health})["components"]["projector"]["crashed"] is True
    finally:
        stop.set()
        server.close()
