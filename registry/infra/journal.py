"""A durable local journal of appended registry events, for the memory-only embedded broker.

The projection's ``events`` table is the durable copy of the log, but it trails the broker:
an event appended (and acknowledged to its client) but not yet projected when the process is
killed would be lost with the embedded broker's memory. So in embedded mode the decider also
appends every event it wrote here — one JSON line per record, fsynced before the reply goes
out — and ``model-registry up`` replays what the projection lacks after restoring the rest.
At start the journal is compacted to the records the projection has not applied yet.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["EventJournal", "JournalRecord"]


@dataclass(frozen=True)
class JournalRecord:
    """One appended record of ``registry.events``."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def line(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "p": self.partition,
                    "o": self.offset,
                    "k": None if self.key is None else base64.b64encode(self.key).decode(),
                    "v": self.value.decode(),
                    "h": [[k, base64.b64encode(v).decode()] for k, v in self.headers],
                }
            )
            + b"\n"
        )

    @classmethod
    def parse(cls, line: bytes) -> JournalRecord:
        d = orjson.loads(line)
        key = None if d["k"] is None else base64.b64decode(d["k"])
        headers = tuple((k, base64.b64decode(v)) for k, v in d["h"])
        return cls(int(d["p"]), int(d["o"]), key, d["v"].encode(), headers)


class EventJournal:
    """Append-only, fsynced JSON lines at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, records: list[JournalRecord]) -> None:
        """Write ``records`` and fsync: once this returns they survive a crash."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(b"".join(r.line() for r in records))
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[JournalRecord]:
        """Every readable record, in file order (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().splitlines():
            try:
                out.append(JournalRecord.parse(line))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return out

    def after(self, positions: dict[int, int]) -> list[JournalRecord]:
        """Records at or past ``positions`` (partition -> next offset), in offset order."""
        keep = [r for r in self.records() if r.offset >= positions.get(r.partition, 0)]
        return sorted(keep, key=lambda r: (r.partition, r.offset))

    def compact(self, positions: dict[int, int]) -> None:
        """Keep only the records at or past ``positions`` (atomically)."""
        keep = self.after(positions)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(r.line() for r in keep))
        os.replace(tmp, self.path)
