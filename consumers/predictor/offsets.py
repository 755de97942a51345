"""Offsets in hand: which fetched records of each partition are not finished yet.

Requests finish out of order (each model has its own lane), so commits follow an
``OffsetTracker``: every fetched record holds a slot - ``(window, offset)`` - in its
partition's ``PartitionWindow`` until it is finished; the position that may be committed for
a partition is its first unfinished offset. At most ``limit`` records are held.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from aiokafka import ConsumerRecord, TopicPartition

__all__ = ["OffsetTracker", "PartitionWindow", "Slot"]


class PartitionWindow:
    """The fetched, unfinished offsets of one partition (in fetch order)."""

    __slots__ = ("committed", "done", "next", "pending", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.next = -1  # the offset after the last one fetched
        self.committed = -1

    def add(self, offset: int) -> None:
        self.pending.append(offset)
        self.next = offset + 1

    def finish(self, offset: int) -> None:
        pending = self.pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self.done
            while pending and pending[0] in done:
                done.remove(pending.popleft())
        else:
            self.done.add(offset)

    @property
    def position(self) -> int:
        """What may be committed: the first unfinished offset, else the next to fetch."""
        return self.pending[0] if self.pending else self.next


class Slot(NamedTuple):
    """A fetched record's place in its partition's window."""

    window: PartitionWindow
    offset: int


class OffsetTracker:
    """Windows of unfinished offsets per partition; at most ``limit`` records held."""

    def __init__(self, limit: int, on_progress: Callable[[], None] | None = None) -> None:
        self.limit = max(1, limit)
        self.unfinished = 0
        self.on_progress = on_progress
        self.windows: dict[TopicPartition, PartitionWindow] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def full(self) -> bool:
        return self.unfinished >= self.limit

    def track(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> PartitionWindow:
        """Hold freshly fetched ``records`` of ``tp`` (in offset order): each one's slot is
        ``Slot(window, record.offset)``."""
        window = self.windows.get(tp)
        if window is None or (records and records[0].offset < window.next):
            # New, or fetched again from an earlier position (a rebalance gave it back): a
            # fresh window; slots of the old one still finish harmlessly.
            window = self.windows[tp] = PartitionWindow(tp)
            if records:  # where it was fetched from: nothing to commit yet
                window.committed = records[0].offset
        if not records:
            return window
        add = window.pending.append
        for record in records:
            add(record.offset)
        window.next = records[-1].offset + 1
        self.unfinished += len(records)
        self._idle.clear()
        if self.unfinished >= self.limit:
            self._room.clear()
        return window

    def finish(self, window: PartitionWindow, offset: int) -> None:
        window.finish(offset)
        self.released(1)

    def released(self, n: int) -> None:
        """``n`` records were finished (``PartitionWindow.finish``) by the caller."""
        self.unfinished -= n
        if self.unfinished < self.limit:
            self._room.set()
        if not self.unfinished:
            self._idle.set()
        if self.on_progress is not None:
            self.on_progress()

    async def room(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until fewer than ``limit`` records are held."""
        try:
            await asyncio.wait_for(self._room.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def idle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every tracked record is finished."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def positions(self, assigned: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The positions to commit: those of ``assigned`` partitions that moved on."""
        out: dict[TopicPartition, int] = {}
        for tp in assigned:
            window = self.windows.get(tp)
            if window is not None and window.next >= 0 and window.position != window.committed:
                out[tp] = window.position
        return out

    def committed(self, positions: dict[TopicPartition, int]) -> None:
        for tp, position in positions.items():
            window = self.windows.get(tp)
            if window is not None:
                window.committed = position
