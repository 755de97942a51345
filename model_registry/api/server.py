"""The API served by uvicorn inside our event loop: ``ApiServer`` (a component of ``up``,
``run(stop)`` like the others) and what ``model-registry api`` runs alone.

The socket is bound when the server is made, so its port is known before it serves (``up``
writes it into ``runtime.json`` and its banner). Loopback unless the operator says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from model_registry.api.app import create_app
from model_registry.api.gateway import Gateway
from registry.infra.settings import Settings

__all__ = ["ApiServer", "ApiStats", "bind", "is_loopback"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, *, fallback: bool = False) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port). ``fallback``: when the port is
    taken, take any free one instead (and log it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose protocol is TCP, and
    # without it every response (headers and body written apart) waits out a delayed ACK
    # (~40 ms; bench/api.py measured it).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not (fallback and exc.errno == errno.EADDRINUSE and port != 0):
            sock.close()
            raise
        log.warning("the API port %d is taken; serving on a free port instead", port)
        sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's owner (``up``, the CLI) stops
    it through ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ApiStats:
    requests_served: int = 0
    port: int = 0
    last_progress_monotonic: float = field(default_factory=time.monotonic)


class ApiServer:
    """The HTTP API and console as a component: ``run(stop)`` serves until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        fallback: bool = True,
    ) -> None:
        self.settings = settings
        self.host = host or settings.api.host
        self._socket = bind(
            self.host, settings.api.port if port is None else port, fallback=fallback
        )
        self.port = int(self._socket.getsockname()[1])
        self.stats = ApiStats(port=self.port)
        self.ready = asyncio.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def run(self, stop: asyncio.Event) -> None:
        gateway = Gateway(self.settings)
        app = create_app(self.settings, services=gateway)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            server_header=False,
            proxy_headers=False,
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[self._socket]), name="api server")
        try:
            while not serving.done() and not stop.is_set():
                if server.started:
                    self.ready.set()
                self.stats.last_progress_monotonic = time.monotonic()
                self.stats.requests_served = server.server_state.total_requests
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stop.wait()), 0.2)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            await gateway.close()
            self._socket.close()
        if not stop.is_set() and serving.done() and serving.exception() is None:
            raise RuntimeError("the API server stopped on its own")
