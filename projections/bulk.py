"""The writer of a rebuild: a new, private projection file filled by a second process.

A rebuild folds in this process and writes in another one (``projections/_bulkchild.py``, a
standard-library script): SQLite's inserts, and above all binding their parameters, hold the
GIL in ``sqlite3``, so a writer thread would take turns with the fold instead of running
beside it. Each batch is marshalled (one C call) and piped over; the child commits it in one
transaction with its position, as ``ProjectionWriter`` does, while the next batches are
fetched and folded. At most ``depth`` batches are in flight (bounded memory).

``BulkWriter`` answers what a ``Projector`` asks of its writer for a file it has just
created: no stored state, no positions but the ones it wrote. The file is private to the
rebuild (nobody else writes it, nobody reads it before the swap), so the position check of
``ProjectionWriter.write`` has nothing to guard; a failure of the child fails the rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import marshal
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from projections.errors import ProjectionError
from projections.rows import BatchRows
from projections.schema import (
    INDEXES,
    LOAD_INDEXES,
    REGISTRY_REVISION_KEY,
    SCHEMA_VERSION,
    TABLES,
    writer_pragmas,
)
from projections.writer import INSERT_EVENTS, SET_META, batch_statements
from registry.core.chain import Chain
from registry.core.state import RegistryState

__all__ = ["BulkWriter"]

_CHILD = Path(__file__).with_name("_bulkchild.py")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _widen_pipe(fd: int) -> None:
    """1 MiB pipe buffer (Linux): fewer round trips per batch of megabytes."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ


class BulkWriter:
    """Creates the projection file at ``path`` (which must not exist) in a child process."""

    bulk = True

    def __init__(self, path: Path, *, depth: int = 2) -> None:
        self.path = Path(path)
        self._depth = max(1, depth)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = 0
        self._meta: dict[str, str] = {}
        self._positions: dict[str, dict[int, int]] = {}

    # ------------------------------------------------------------------ protocol
    # Frames go through blocking pipes in a worker thread (the GIL is released while the OS
    # copies): asyncio's pipe transport would buffer, copy and wake up per 64 KiB instead.

    def _write_frame(self, data: bytes) -> None:
        proc = self._require()
        assert proc.stdin is not None
        view = memoryview(len(data).to_bytes(8, "little") + data)
        fd = proc.stdin.fileno()
        while view:
            view = view[os.write(fd, view) :]

    def _read_answer(self) -> tuple[bool, Any]:
        proc = self._require()
        assert proc.stdout is not None
        head = proc.stdout.read(8)
        if len(head) == 8:
            size = int.from_bytes(head, "little")
            body = proc.stdout.read(size)
            if len(body) == size:
                return marshal.loads(body)  # type: ignore[no-any-return]
        err = b""
        if proc.stderr is not None:
            with contextlib.suppress(Exception):
                err = proc.stderr.read()
        raise ProjectionError(
            f"the rebuild writer of {self.path} stopped: {err.decode(errors='replace')[-2000:]}"
        )

    async def _send(self, kind: str, payload: Any) -> None:
        data = marshal.dumps((kind, payload))
        self._pending += 1
        try:
            await asyncio.to_thread(self._write_frame, data)
        except (BrokenPipeError, ConnectionResetError):
            while self._pending:
                await self._answer()  # the child stopped: its answers say why
            raise

    async def _answer(self) -> Any:
        ok, detail = await asyncio.to_thread(self._read_answer)
        self._pending -= 1
        if not ok:
            raise ProjectionError(f"the rebuild writer of {self.path} failed: {detail}")
        return detail

    async def _request(self, kind: str, payload: Any) -> Any:
        await self._send(kind, payload)
        while self._pending > 1:
            await self._answer()
        return await self._answer()

    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ProjectionError(f"the rebuild writer of {self.path} is not open")
        return self._proc

    # ------------------------------------------------------------ ProjectionWriter's interface

    async def open(self) -> int | None:
        """Start the child and create the file; None: a new file (it is always new)."""
        if self.path.exists():
            raise ProjectionError(f"{self.path} exists; a bulk load starts from a new file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(  # noqa: S603 - this interpreter, our script
            [sys.executable, "-I", str(_CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        assert self._proc.stdin is not None
        _widen_pipe(self._proc.stdin.fileno())
        self._meta = {
            "schema_version": str(SCHEMA_VERSION),
            "generation": str(uuid.uuid4()),
            REGISTRY_REVISION_KEY: "0",
        }
        ddl = [*TABLES, *LOAD_INDEXES]
        await self._request("open", (str(self.path), list(writer_pragmas(True)), ddl))
        await self._request("write", [(SET_META, list(self._meta.items()))])
        return None

    async def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    async def set_meta(self, values: dict[str, str]) -> None:
        self._meta.update(values)
        await self._request("write", [(SET_META, list(values.items()))])

    async def checkpoints(self, topic: str) -> dict[int, int]:
        return dict(self._positions.get(topic, {}))

    async def last_stored(self, partition: int) -> tuple[int, bytes | None, str | None] | None:
        return None  # only asked for stored positions beyond 0, which a new file has not

    async def load_state(self) -> RegistryState:
        return RegistryState()

    async def load_chain(self) -> Chain:
        return Chain()  # a new file: the chain starts at the log's beginning

    async def write(self, topic: str, rows: BatchRows, expected: dict[int, int]) -> None:
        """Hand the batch to the child; returns once at most ``depth`` batches are pending."""
        ops: list[tuple[str | None, list[tuple[Any, ...]]]] = [
            (None if sql == INSERT_EVENTS else sql, params)
            for sql, params in batch_statements(topic, rows)
        ]
        if rows.registry_revision is not None:
            self._meta[REGISTRY_REVISION_KEY] = str(rows.registry_revision)
        await self._send("write", ops)
        self._positions.setdefault(topic, {}).update(rows.positions)
        while self._pending > self._depth:
            await self._answer()

    async def flush(self) -> None:
        """Wait until every batch handed over is committed."""
        while self._pending:
            await self._answer()

    async def create_indexes(self) -> None:
        """Build the secondary indexes not kept during the load and refresh the statistics."""
        await self.flush()
        rest = [ddl for ddl in INDEXES if ddl not in LOAD_INDEXES]
        # Sampled statistics: they pick between indexes as well as exact ones, at 1/20 the cost.
        await self._request("sql", [*rest, "PRAGMA analysis_limit=1000", "ANALYZE"])

    async def close(self) -> None:
        """Flush and stop the child (killed if it does not answer: the file is unfinished)."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                await self.flush()
                await self._request("close", None)
        finally:
            self._proc = None
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await asyncio.to_thread(proc.wait)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
