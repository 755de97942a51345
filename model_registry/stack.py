"""The whole system in one process: ``model-registry up`` and the demo.

With no ``KAFKA_BOOTSTRAP_SERVERS`` it starts the embedded broker (loopback only) with a
cluster id kept in the data dir, and, because that broker keeps data in memory only,
restores ``registry.events`` from the projection's ``events`` table before anything else
starts. Then it runs the decider, projector, prediction consumer and monitor as tasks of one
event loop, each judged healthy by its progress. A component that crashes is reported (with
its cause) and restarted with a backoff (``model_registry.supervisor``); the stack goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.monitor.metrics import MetricsServer
from consumers.monitor.service import Monitor, monitor_path
from consumers.predictor import PredictionConsumer
from model_registry.runtime import remove_runtime, write_runtime
from model_registry.supervisor import Backoff, Crash, supervise
from projections.projector import Projector, projection_path
from projections.restore import restore_log
from registry.decider.decider import Decider
from registry.infra.files import DataDirLock, private_dir, private_umask
from registry.infra.health import ComponentHealth, serve_health
from registry.infra.identity import ensure_local
from registry.infra.journal import EventJournal, JournalRecord
from registry.infra.kafka.broker import EmbeddedBroker
from registry.infra.kafka.clients import make_producer, start_client
from registry.infra.kafka.topics import ensure_topics
from registry.infra.settings import Settings

__all__ = ["COMPONENTS", "Stack"]

log = logging.getLogger(__name__)
JOURNAL_FILE = "events.journal"


def _decider(settings: Settings, options: dict[str, Any]) -> Any:
    return Decider(settings, journal=options.get("journal"))


def _projector(settings: Settings, options: dict[str, Any]) -> Any:
    return Projector(settings, projection_path(settings))


def _predictor(settings: Settings, options: dict[str, Any]) -> Any:
    # One process reads every partition: a group join costs seconds on the embedded broker
    # and `up` runs one predictor. REGISTRY_PREDICTOR_ASSIGNMENT=group overrides.
    config = settings.predictor
    if config.assignment is None:
        config = config.with_(assignment="all")
    mock = bool(options.get("mock_fallback", False))
    return PredictionConsumer(settings, mock_fallback=mock, config=config)


def _monitor(settings: Settings, options: dict[str, Any]) -> Any:
    return Monitor(settings, monitor_path(settings))


def _guard(settings: Settings, options: dict[str, Any]) -> Any:
    from model_registry.guard import Guard

    return Guard(settings)


def _api(settings: Settings, options: dict[str, Any]) -> Any:
    from model_registry.api.server import ApiServer

    # A restart serves on the port the first instance bound (the one runtime.json names).
    server = ApiServer(settings, port=options.get("api_port_bound"))
    options["api_port_bound"] = server.port
    return server


Factory = Callable[[Settings, dict[str, Any]], Any]
"""Builds a fresh component (it has ``run(stop)`` and ``stats``) from the settings and options."""

_FACTORIES: dict[str, Factory] = {
    "decider": _decider,
    "projector": _projector,
    "predictor": _predictor,
    "monitor": _monitor,
    "guard": _guard,
    "api": _api,
}
COMPONENTS = tuple(_FACTORIES)


@dataclass
class Stack:
    """Broker (when embedded) + registry processes, started and stopped together.

    Each component runs under ``supervise``: a crash goes to ``on_crash`` (default: the
    log) and the component is restarted after ``backoff``; ``crashes`` keeps the latest."""

    settings: Settings
    components: tuple[str, ...] = COMPONENTS
    health_port: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    restored: int = 0
    health: dict[str, ComponentHealth] = field(default_factory=dict)
    metrics_port_bound: int | None = None
    on_crash: Callable[[Crash], None] | None = None
    factories: dict[str, Factory] = field(default_factory=lambda: dict(_FACTORIES))
    backoff: Backoff = field(default_factory=Backoff)
    crashes: deque[Crash] = field(default_factory=lambda: deque(maxlen=100))
    restarts: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _metrics: Any = None
    _locks: list[DataDirLock] = field(default_factory=list)
    _supervisors: list[asyncio.Task[None]] = field(default_factory=list)
    _wrote_runtime: bool = False

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    async def start(self) -> None:
        """Start the broker if needed, create topics, restore the log, start the components."""
        data_dir = self.settings.data_dir
        private_umask()  # the projection, journal and runtime files: the owner's only
        private_dir(data_dir)
        for name in self.components:  # a second stack on this data dir is refused, not mixed in
            lock = DataDirLock(data_dir, name)
            lock.acquire()
            self._locks.append(lock)
        ensure_local(self.settings)  # the local signing key and actors file, once
        if not self.settings.bootstrap_servers:
            self.broker = EmbeddedBroker(cluster_id=_cluster_id(data_dir))
            await asyncio.to_thread(self.broker.start)
            self.settings = self.settings.with_(bootstrap_servers=self.broker.bootstrap_servers)
        await ensure_topics(self.settings)
        if self.embedded:
            self.restored = await self._restore()
        for name in self.components:
            if name not in self.factories:
                raise ValueError(f"unknown component {name!r}; choose from {', '.join(COMPONENTS)}")
            self._supervise(name)
        metrics_port = self.options.get("metrics_port")
        monitor = self.health["monitor"].component if "monitor" in self.health else None
        if metrics_port is not None and isinstance(monitor, Monitor):
            self._metrics = MetricsServer(monitor, "127.0.0.1", metrics_port)
            self.metrics_port_bound = await self._metrics.start()
        if self.health_port is not None:
            self._server = await serve_health(self.health, "127.0.0.1", self.health_port)
        self._write_runtime()

    def _supervise(self, name: str) -> None:
        """Start ``name`` under a supervisor that restarts it after a crash."""
        factory = self.factories[name]
        health = ComponentHealth(name, factory(self.settings, self.options))
        self.health[name] = health
        self.restarts[name] = 0

        def create() -> Any:
            return factory(self.settings, self.options)

        def started(component: Any) -> None:
            self.restarts[name] += 1
            if isinstance(component, Monitor) and self._metrics is not None:
                self._metrics.monitor = component  # /metrics follows the running monitor

        supervisor = supervise(
            health,
            create,
            self._stop,
            on_crash=self._crashed,
            on_start=started,
            backoff=self.backoff,
        )
        self._supervisors.append(asyncio.create_task(supervisor, name=f"supervise {name}"))

    def _crashed(self, crash: Crash) -> None:
        self.crashes.append(crash)
        if self.on_crash is not None:
            self.on_crash(crash)
        else:
            level = logging.ERROR if crash.stuck else logging.WARNING
            extra = {
                "component": crash.component,
                "error": crash.error,
                "record": str(crash.position) if crash.position else None,
                "in_a_row": crash.in_a_row,
                "restart_in": crash.restart_in,
            }
            log.log(level, "%s", crash.describe(), extra=extra, exc_info=self._trace(crash))

    def _trace(self, crash: Crash) -> BaseException | None:
        return crash.exception if self.settings.debug else None

    async def _restore(self) -> int:
        """Restore the log: the projection's copy, then what only the journal holds."""
        journal = EventJournal(self.settings.data_dir / JOURNAL_FILE)
        self.options["journal"] = journal
        db = projection_path(self.settings)
        count = 0
        positions: dict[int, int] = {}
        if db.exists():
            count = int(await restore_log(self.settings, db))
            positions = _checkpoints(db)
            log.info("restored %d registry events from %s into the embedded broker", count, db)
        tail = journal.after(positions)
        if tail:
            await _produce_exact(self.settings, tail)
            log.info(
                "restored %d more events from the journal (accepted, not yet projected)", len(tail)
            )
        journal.compact(positions)
        return count + len(tail)

    def _write_runtime(self) -> None:
        info = {
            "bootstrap_servers": self.settings.bootstrap_servers,
            "topic_prefix": self.settings.topic_prefix,
            "pid": os.getpid(),
            "embedded": self.embedded,
            "broker_pid": self.broker.pid if self.broker else None,
            "metrics_port": self.metrics_port_bound,
            "health_port": self.health_port_bound,
            "api_port": self.api_port_bound,
        }
        write_runtime(self.settings.data_dir, info)
        self._wrote_runtime = True

    @property
    def health_port_bound(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def api_port_bound(self) -> int | None:
        """The port of the HTTP API and console (component ``api``), if it runs."""
        port = self.options.get("api_port_bound")
        return int(port) if "api" in self.health and port is not None else None

    def not_ready(self) -> list[str]:
        """Components that signal readiness (a ``ready`` event) and are not ready (yet)."""
        out = []
        for name, h in self.health.items():
            ready = getattr(h.component, "ready", None)
            if isinstance(ready, asyncio.Event) and not ready.is_set():
                out.append(name)
        return out

    async def wait_ready(self, timeout: float = 60.0, *, until_crash: bool = False) -> list[str]:
        """Wait until every component is ready, or ``timeout`` seconds; returns those that
        are not. A component restarting after a crash is waited for in its new instance;
        with ``until_crash``, no longer once it has crashed (its crash was reported)."""
        deadline = time.monotonic() + timeout
        while (waiting := self.not_ready()) and time.monotonic() < deadline:
            crashed = {c.component for c in self.crashes}
            if until_crash and crashed.issuperset(waiting):
                break
            await asyncio.sleep(0.02)
        return waiting

    def crashed(self) -> list[str]:
        """Names of components that have crashed and wait for their restart."""
        return [
            n
            for n, h in self.health.items()
            if h.task is not None
            and h.task.done()
            and not h.task.cancelled()
            and h.task.exception()
        ]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop components (they save positions), then the broker. Idempotent."""
        self._stop.set()
        tasks = self._supervisors[:]
        self._supervisors.clear()
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
        if self._wrote_runtime:  # never the file of another `up` this one failed to join
            remove_runtime(self.settings.data_dir)
            self._wrote_runtime = False
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        for lock in self._locks:
            lock.release()
        self._locks.clear()


def _checkpoints(db: Path) -> dict[int, int]:
    """The projection's next offset per partition of registry.events."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            rows = conn.execute("SELECT partition, next_offset FROM checkpoints").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {int(p): int(o) for p, o in rows}


async def _produce_exact(settings: Settings, records: list[JournalRecord]) -> None:
    """Produce journal records back, checking each lands at its recorded offset."""
    producer = make_producer(settings)
    await start_client(producer, settings)
    try:
        for r in records:
            meta = await producer.send_and_wait(
                settings.topic("registry.events"),
                r.value,
                key=r.key,
                partition=r.partition,
                headers=list(r.headers),
            )
            if meta.offset != r.offset:
                raise RuntimeError(
                    f"journal record {r.partition}:{r.offset} landed at offset {meta.offset}; the "
                    "restored log "
                    "differs from the journal (run `model-registry projections rebuild` after "
                    "checking the data dir)"
                )
    finally:
        await producer.stop()


def _cluster_id(data_dir: Path) -> str:
    """A cluster id that survives restarts, so the projector recognises the restored log."""
    path = data_dir / "cluster_id"
    if not path.exists():
        path.write_text(f"embedded-{uuid.uuid4().hex[:12]}")
    return path.read_text().strip()
