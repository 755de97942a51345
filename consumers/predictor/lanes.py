"""Bulkheads: one lane per served model, so a slow or failing model delays only its own requests.

A ``Lane`` is a bounded queue (``capacity`` requests, queued and running) in front of at most
``groups`` concurrent ``predict_batch`` calls of up to ``max_group`` requests each (the calls
inside a group are further bounded by the provider's ``maxConcurrency``). A group takes
everything queued when it starts, so a fast model still predicts in large vectorised groups.

When a lane is full, ``offer`` refuses; the consumer then waits for room, but only while the
lane moves: once no group of it has finished for ``max_wait_s`` (``stalled_for``) its further
requests are answered at once as overloaded (``ProviderUnavailable``, transient), so a stuck
or very slow model never holds up the fetch loop, and with it every other model, for longer
than ``max_wait_s``. A busy lane that keeps finishing groups only applies backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from consumers.predictor.work import Work

__all__ = ["Lane", "Lanes"]

log = logging.getLogger(__name__)

Runner = Callable[[list[Work]], Awaitable[None]]


class Lane:
    """The bulkhead of one served model."""

    def __init__(
        self, model_id: str, run: Runner, *, capacity: int, groups: int, max_group: int
    ) -> None:
        self.model_id = model_id
        self.capacity = max(1, capacity)
        self.groups = max(1, groups)
        self.max_group = max(1, max_group)
        self._run = run
        self._queue: deque[Work] = deque()
        self.size = 0  # queued + running
        self.running = 0  # groups started (a starting one included)
        self._starting = False
        self.moved_at = time.perf_counter()  # a group finished, or the lane became busy
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Lane({self.model_id!r}, size={self.size}, running={self.running})"

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def offer(self, work: Work, *, force: bool = False) -> bool:
        """Queue ``work`` unless the lane is full (``force``: even then, for a request the
        lane must take, such as a challenger's fallback to its champion)."""
        if self.size >= self.capacity and not force:
            return False
        if not self.size:
            self.moved_at = time.perf_counter()
        self._queue.append(work)
        self.size += 1
        self._kick()
        return True

    def offer_many(self, works: list[Work]) -> list[Work]:
        """Queue as many of ``works`` as there is room for; returns the rest."""
        room = self.capacity - self.size
        if room <= 0:
            return works
        taken = works if room >= len(works) else works[:room]
        if not self.size:
            self.moved_at = time.perf_counter()
        self._queue.extend(taken)
        self.size += len(taken)
        self._kick()
        return [] if taken is works else works[room:]

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds since the lane last moved (a group finished), while it holds requests."""
        if not self.size:
            return 0.0
        return (time.perf_counter() if now is None else now) - self.moved_at

    async def wait_room(self, timeout: float) -> None:
        """Wait until a group finishes (or ``timeout`` seconds)."""
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), max(0.0, timeout))

    async def cancel(self) -> None:
        """Cancel the running groups (at shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _kick(self) -> None:
        if self._queue and self.running < self.groups and not self._starting:
            self._starting = True
            self.running += 1
            task = asyncio.create_task(self._group(), name=f"lane {self.model_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _group(self) -> None:
        # Takes what is queued when it starts running (after the dispatcher has queued a
        # whole fetched batch): one large group, not one per request.
        self._starting = False
        queue = self._queue
        take = [queue.popleft() for _ in range(min(len(queue), self.max_group))]
        self._kick()  # more queued: another group may start beside this one
        try:
            if take:
                await self._run(take)
        except asyncio.CancelledError:
            raise
        except Exception:  # the runner answers its works itself; this is a bug, logged
            log.exception("lane %s: a group failed outside the runner", self.model_id)
        finally:
            self.moved_at = time.perf_counter()
            self.running -= 1
            self.size -= len(take)
            self._room.set()
            self._kick()


class Lanes:
    """The lanes by served model id (created on demand, dropped when empty)."""

    def __init__(self, run: Runner, *, capacity: int, groups: int, max_group: int) -> None:
        self._run = run
        self.capacity, self.groups, self.max_group = capacity, groups, max_group
        self._lanes: dict[str, Lane] = {}

    def __len__(self) -> int:
        return len(self._lanes)

    def get(self, model_id: str) -> Lane:
        lane = self._lanes.get(model_id)
        if lane is None:
            lane = self._lanes[model_id] = Lane(
                model_id,
                self._run,
                capacity=self.capacity,
                groups=self.groups,
                max_group=self.max_group,
            )
        return lane

    @property
    def busy(self) -> bool:
        """Some lane holds a request."""
        return any(lane.size for lane in self._lanes.values())

    def prune(self) -> None:
        """Forget the lanes that hold nothing (a model's lane is rebuilt on its next request)."""
        for model_id in [
            m for m, lane in self._lanes.items() if not lane.size and not lane.running
        ]:
            del self._lanes[model_id]

    def sizes(self) -> dict[str, int]:
        """Requests held per model (queued and running)."""
        return {m: lane.size for m, lane in self._lanes.items() if lane.size}

    async def cancel(self) -> None:
        await asyncio.gather(*(lane.cancel() for lane in self._lanes.values()))
