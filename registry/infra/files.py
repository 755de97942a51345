"""The data dir: private to its owner, and held by one stack at a time (docs/security.md#files).

``private_dir`` creates a directory 0700 (and tightens an existing one); ``write_private``
writes a file 0600, atomically; ``private_umask`` makes every file a process creates
afterwards (SQLite databases and their WAL files, the journal, ``runtime.json``) 0600.
``DataDirLock`` is an advisory lock (``flock``) per component on ``<data_dir>/.<name>.lock``:
a second ``up`` (or decider, projector...) on the same data dir is refused while the first
runs; different components may share a data dir; the lock dies with its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from registry.core.errors import RegistryError

__all__ = ["DataDirLocked", "DataDirLock", "private_dir", "private_umask", "write_private"]


class DataDirLocked(RegistryError):
    """Another process holds the data dir."""

    code = "DataDirLocked"


def private_umask() -> None:
    """Files and directories this process creates from now on are its owner's only."""
    os.umask(0o077)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (created 0700 if missing)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, atomically (temp file, then rename)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class DataDirLock:
    """Exclusive use of a data dir by one component of one process (``acquire``/``release``)."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.path = data_dir / f".{name}.lock"
        self.holder = f"a running {name}"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock. Raises ``DataDirLocked`` naming the holder when it is taken."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"the data dir {self.path.parent} is in use by {holder}; stop it first, or give "
                "this one its own data dir (REGISTRY_DATA_DIR): two on one data dir would mix "
                "their logs"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder} (pid {os.getpid()})".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
