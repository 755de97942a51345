"""The whole system in one process: ``model-registry up`` and the demo.

With no ``KAFKA_BOOTSTRAP_SERVERS`` it starts the embedded broker (loopback only) with a
cluster id kept in the data dir, and, because that broker keeps data in memory only,
restores ``registry.events`` from the projection's ``events`` table before anything else
starts. Then it runs the decider, projector, prediction consumer and monitor as tasks of one
event loop, each judged healthy by its progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.health import ComponentHealth, serve_health
from registry.kafka.broker import EmbeddedBroker
from registry.kafka.topics import ensure_topics
from registry.settings import Settings

__all__ = ["COMPONENTS", "RUNTIME_FILE", "Stack"]

log = logging.getLogger(__name__)
RUNTIME_FILE = "runtime.json"
COMPONENTS = ("decider", "projector", "predictor", "monitor")


def _make_component(name: str, settings: Settings, options: dict[str, Any]) -> Any:
    if name == "decider":
        from registry.decider import Decider

        return Decider(settings)
    if name == "projector":
        from projections.projector import Projector, projection_path

        return Projector(settings, projection_path(settings))
    if name == "predictor":
        from consumers.predictor import PredictionConsumer

        return PredictionConsumer(settings, mock_fallback=options.get("mock_fallback", False))
    if name == "monitor":
        from consumers.monitor.service import Monitor, monitor_path

        return Monitor(settings, monitor_path(settings))
    raise ValueError(f"unknown component {name!r}; choose from {', '.join(COMPONENTS)}")


@dataclass
class Stack:
    """Broker (when embedded) + registry processes, started and stopped together."""

    settings: Settings
    components: tuple[str, ...] = COMPONENTS
    health_port: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    restored: int = 0
    health: dict[str, ComponentHealth] = field(default_factory=dict)
    metrics_port_bound: int | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _metrics: Any = None

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    async def start(self) -> None:
        """Start the broker if needed, create topics, restore the log, start the components."""
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.bootstrap_servers:
            self.broker = EmbeddedBroker(cluster_id=_cluster_id(data_dir))
            await asyncio.to_thread(self.broker.start)
            self.settings = self.settings.with_(bootstrap_servers=self.broker.bootstrap_servers)
        await ensure_topics(self.settings)
        if self.embedded:
            self.restored = await self._restore()
        for name in self.components:
            component = _make_component(name, self.settings, self.options)
            health = ComponentHealth(name, component)
            health.task = asyncio.create_task(component.run(self._stop), name=name)
            self.health[name] = health
        metrics_port = self.options.get("metrics_port")
        if metrics_port is not None and "monitor" in self.health:
            from consumers.monitor.metrics import MetricsServer

            self._metrics = MetricsServer(self.health["monitor"].component, "127.0.0.1", metrics_port)
            self.metrics_port_bound = await self._metrics.start()
        if self.health_port is not None:
            self._server = await serve_health(self.health, "127.0.0.1", self.health_port)
        self._write_runtime()

    async def _restore(self) -> int:
        from projections.projector import projection_path

        db = projection_path(self.settings)
        if not db.exists():
            return 0
        from projections.restore import restore_log

        count = await restore_log(self.settings, db)
        log.info("restored %d registry events from %s into the embedded broker", count, db)
        return int(count)

    def _write_runtime(self) -> None:
        info = {
            "bootstrap_servers": self.settings.bootstrap_servers,
            "topic_prefix": self.settings.topic_prefix,
            "pid": os.getpid(),
            "embedded": self.embedded,
            "broker_pid": self.broker.pid if self.broker else None,
            "metrics_port": self.metrics_port_bound,
            "health_port": self.health_port_bound,
        }
        (self.settings.data_dir / RUNTIME_FILE).write_text(json.dumps(info, indent=2))

    @property
    def health_port_bound(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every component that signals readiness (``ready`` event) is ready."""
        for h in self.health.values():
            ready = getattr(h.component, "ready", None)
            if isinstance(ready, asyncio.Event):
                await asyncio.wait_for(ready.wait(), timeout)

    def crashed(self) -> list[str]:
        """Names of components whose task has ended with an error."""
        return [n for n, h in self.health.items() if h.task is not None and h.task.done() and not h.task.cancelled() and h.task.exception()]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop components (they save positions), then the broker. Idempotent."""
        self._stop.set()
        tasks = [h.task for h in self.health.values() if h.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        with contextlib.suppress(FileNotFoundError):
            (self.settings.data_dir / RUNTIME_FILE).unlink()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)


def _cluster_id(data_dir: Path) -> str:
    """A cluster id that survives restarts, so the projector recognises the restored log."""
    path = data_dir / "cluster_id"
    if not path.exists():
        path.write_text(f"embedded-{uuid.uuid4().hex[:12]}")
    return path.read_text().strip()
