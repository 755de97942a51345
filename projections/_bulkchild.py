"""The process that writes a rebuild's SQLite file (see ``projections.bulk``).

Run as a script with the standard library only (``python _bulkchild.py``), so that it starts
in milliseconds and shares no GIL with the folding process. It reads framed requests from
stdin and answers each on stdout, in order:

    request:  8-byte little-endian length, then ``marshal.dumps((kind, payload))``
    answer:   8-byte little-endian length, then ``marshal.dumps((ok, detail))``

kinds: ``open`` (path, pragmas, DDL), ``write`` (one transaction: a list of
``(sql, rows)``; ``sql`` ``None`` means "the events table", written with multi-row inserts),
``sql`` (statements run outside a transaction, e.g. CREATE INDEX) and ``close``.
A failed request is answered ``(False, message)`` and the process stops: the caller gives the
rebuild up. End of input (the caller died) stops it too, leaving the file unfinished.
"""

from __future__ import annotations

import itertools
import marshal
import queue
import sqlite3
import sys
import threading
import traceback
from typing import Any, BinaryIO

_EVENT_COLUMNS = 16
_EVENTS_PER_INSERT = 2000  # 32,000 parameters, under SQLite's 32,766


def _read_frames(stream: BinaryIO, out: queue.Queue[bytes | None]) -> None:
    """Reader thread: frames from ``stream`` into ``out`` (``None`` at end of input)."""
    try:
        while True:
            head = stream.read(8)
            if len(head) < 8:
                break
            size = int.from_bytes(head, "little")
            body = stream.read(size)
            if len(body) < size:
                break
            out.put(body)
    finally:
        out.put(None)


def _answer(stream: BinaryIO, ok: bool, detail: Any) -> None:
    data = marshal.dumps((ok, detail))
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


_EVENTS_SQL: dict[int, str] = {}


def events_inserts(rows: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
    """``events`` rows as multi-row INSERTs of up to 2,000 rows each (SQL, parameters).

    Binding the parameters of 2,000 rows in one call costs less than 2,000 calls of
    ``executemany``, and a thread running them gives the GIL back once per statement, not
    once per row (a per-row hand-over waits on whatever else the process runs).

    The rows carry the record's value as bytes (the last column); it is decoded here, on the
    writer's side of the pipe, not in the process that folds."""
    out = []
    for lo in range(0, len(rows), _EVENTS_PER_INSERT):
        part = rows[lo : lo + _EVENTS_PER_INSERT]
        sql = _EVENTS_SQL.get(len(part))
        if sql is None:
            one = "(" + ",".join("?" * _EVENT_COLUMNS) + ")"
            sql = _EVENTS_SQL[len(part)] = "INSERT INTO events VALUES " + ",".join(
                [one] * len(part)
            )
        flat = list(itertools.chain.from_iterable(part))
        values = flat[_EVENT_COLUMNS - 1 :: _EVENT_COLUMNS]
        flat[_EVENT_COLUMNS - 1 :: _EVENT_COLUMNS] = [v.decode("utf-8") for v in values]
        out.append((sql, flat))
    return out


class _Writer:
    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None

    def open(self, path: str, pragmas: list[str], ddl: list[str]) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in pragmas:
            self.db.execute(pragma)
        self.db.execute("BEGIN")
        for statement in ddl:
            self.db.execute(statement)
        self.db.execute("COMMIT")

    def write(self, ops: list[tuple[str | None, list[tuple[Any, ...]]]]) -> int:
        assert self.db is not None
        db = self.db
        db.execute("BEGIN")
        try:
            for sql, rows in ops:
                if sql is None:
                    for insert, params in events_inserts(rows):
                        db.execute(insert, params)
                else:
                    db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(ops)

    def sql(self, statements: list[str]) -> None:
        assert self.db is not None
        for statement in statements:
            self.db.execute(statement)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=3)
    threading.Thread(target=_read_frames, args=(stdin, frames), daemon=True).start()
    writer = _Writer()
    try:
        while True:
            frame = frames.get()
            if frame is None:
                return 1  # the caller went away: leave the unfinished file to it
            kind, payload = marshal.loads(frame)
            try:
                if kind == "open":
                    writer.open(*payload)
                    detail: Any = None
                elif kind == "write":
                    detail = writer.write(payload)
                elif kind == "sql":
                    writer.sql(payload)
                    detail = None
                elif kind == "close":
                    writer.close()
                    _answer(stdout, True, None)
                    return 0
                else:
                    raise ValueError(f"unknown request {kind!r}")
            except Exception as exc:  # noqa: BLE001 - reported to the caller, then stop
                _answer(stdout, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                return 2
            _answer(stdout, True, detail)
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main())
