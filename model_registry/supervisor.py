"""Supervision of the stack's components (docs/design.md#supervision).

``up`` runs the decider, projector, prediction consumer and monitor as tasks of one event
loop. When one of them crashes, ``supervise`` reports the cause (a ``Crash``: the
exception's type and message, and the record it was handling when the exception names one)
and starts a fresh instance of it after a pause that doubles with each crash in a row
(``Backoff``: 0.5 s, 1 s, 2 s ... at most 30 s; a run that lasted ``reset_after`` seconds
counts as healthy and the next crash starts over). The stack, and the embedded broker that
holds the prediction topics in memory, keeps running; it never gives up on a component.

**Which record**, by convention: an exception raised while handling one record names it
with the attributes ``topic`` (str), ``partition`` (int) and ``offset`` (int), on itself or
on an exception of its ``__cause__``/``__context__`` chain, or with a ``record`` attribute
holding an object that has those three (aiokafka's ``ConsumerRecord`` does). The layers
below cannot import this module, so the convention is one of attributes only::

    except Exception as exc:
        exc.topic, exc.partition, exc.offset = record.topic, record.partition, record.offset
        raise

Nothing else of the record is read: never its key, headers or value. A component that
crashes ``STUCK_AFTER`` times in a row at the same record is reported loudly (``stuck``);
taking that record out of its way (a dead letter) is the component's own job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from registry.infra.health import ComponentHealth

__all__ = [
    "STUCK_AFTER",
    "Backoff",
    "Crash",
    "RecordPosition",
    "describe_exception",
    "record_position",
    "supervise",
]

log = logging.getLogger(__name__)

STUCK_AFTER = 3
"""Crashes in a row at the same record after which the supervisor says so loudly."""

MESSAGE_LIMIT = 500
"""Characters of an exception's message a report keeps."""


@dataclass(frozen=True)
class Backoff:
    """Pauses before restarting a crashed component: ``initial`` doubling (``factor``) up to
    ``maximum``; a run of at least ``reset_after`` seconds resets the count."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, crashes_in_a_row: int) -> float:
        """The pause after the ``crashes_in_a_row``-th crash in a row (1, 2, ...)."""
        exponent = max(0, crashes_in_a_row - 1)
        return float(min(self.maximum, self.initial * self.factor ** min(exponent, 64)))


@dataclass(frozen=True)
class RecordPosition:
    """Where a component's input was when it crashed."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic} partition {self.partition} offset {self.offset}"


@dataclass(frozen=True)
class Crash:
    """One crash of a component, as the supervisor reports it (never a record's value)."""

    component: str
    error: str
    """The exception's type name."""
    message: str
    """The exception's message (bounded); the registry's messages never hold a secret."""
    position: RecordPosition | None
    in_a_row: int
    """Crashes in a row, this one included (reset by a healthy run)."""
    at_same_record: int
    """Crashes in a row at ``position``, this one included (0: no position known)."""
    restart_in: float
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def stuck(self) -> bool:
        """Whether it keeps crashing at the same record."""
        return self.at_same_record >= STUCK_AFTER

    @property
    def cause(self) -> str:
        return f"{self.error}: {self.message}" if self.message else self.error

    def describe(self) -> str:
        """One or two sentences for the operator."""
        where = f" at {self.position}" if self.position else ""
        restart = f"restarting it in {self.restart_in:g}s"
        if self.stuck:
            return (
                f"ALERT: {self.component} has crashed {self.at_same_record} times in a row"
                f"{where} ({self.cause}). That record keeps crashing it: the stack keeps "
                f"running and {restart} (then every {self.restart_in:g}s at most), but it will "
                "not get past it until the record is dead-lettered or the cause fixed."
            )
        times = f" (crash {self.in_a_row} in a row)" if self.in_a_row > 1 else ""
        return f"{self.component} crashed{where}: {self.cause}; {restart}{times}."


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of ``exc``; an exception group by its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = " ".join(str(exc).split())
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 3] + "..."
    return type(exc).__name__, message


def record_position(exc: BaseException | None) -> RecordPosition | None:
    """The record ``exc`` says its component was handling (see the module's convention)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for holder in (exc, getattr(exc, "record", None)):
            position = _position_of(holder)
            if position is not None:
                return position
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        else:
            exc = exc.__cause__ or exc.__context__
    return None


def _position_of(holder: object) -> RecordPosition | None:
    if holder is None:
        return None
    topic = getattr(holder, "topic", None)
    partition = getattr(holder, "partition", None)
    offset = getattr(holder, "offset", None)
    if (
        isinstance(topic, str)
        and isinstance(partition, int)
        and isinstance(offset, int)
        and not isinstance(partition, bool)
        and not isinstance(offset, bool)
    ):
        return RecordPosition(topic, partition, offset)
    return None


@dataclass
class _Streak:
    """Crashes in a row, and at which record."""

    in_a_row: int = 0
    at_same_record: int = 0
    position: RecordPosition | None = None

    def add(self, position: RecordPosition | None) -> None:
        self.in_a_row += 1
        if position is None:
            self.at_same_record = 0
        elif position == self.position:
            self.at_same_record += 1
        else:
            self.at_same_record = 1
        self.position = position


async def supervise(
    health: ComponentHealth,
    create: Callable[[], Any],
    stop: asyncio.Event,
    *,
    on_crash: Callable[[Crash], None],
    on_start: Callable[[Any], None] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run ``health.component`` (``run(stop)``) until ``stop`` is set; when it crashes (or
    returns on its own), report it to ``on_crash`` and run a fresh one from ``create()``
    after the backoff. ``health`` always holds the current instance and its task."""
    backoff = backoff or Backoff()
    streak = _Streak()
    component: Any = health.component
    error: BaseException | None = None
    while not stop.is_set():
        began = time.monotonic()
        if component is not None:
            error = await _run_once(health, component, stop)
            if error is None:
                return
        if time.monotonic() - began >= backoff.reset_after:
            streak = _Streak()
        assert error is not None
        crash = _crash(health.name, error, streak, backoff)
        log.debug("%s crashed", health.name, exc_info=error)
        on_crash(crash)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), crash.restart_in)
        if stop.is_set():
            return
        try:
            component = create()
        except Exception as exc:  # noqa: BLE001 - a constructor's failure is a crash too
            component, error = None, exc
            health.task = _failed(exc)
            continue
        health.component = component
        if on_start is not None:
            on_start(component)


def _crash(name: str, error: BaseException, streak: _Streak, backoff: Backoff) -> Crash:
    position = record_position(error)
    streak.add(position)
    kind, message = describe_exception(error)
    return Crash(
        component=name,
        error=kind,
        message=message,
        position=position,
        in_a_row=streak.in_a_row,
        at_same_record=streak.at_same_record,
        restart_in=backoff.delay(streak.in_a_row),
        exception=error,
    )


async def _run_once(
    health: ComponentHealth, component: Any, stop: asyncio.Event
) -> BaseException | None:
    """Run one instance to its end: None when it ended because ``stop`` was set, else the
    exception it crashed with (or one saying it returned without being asked)."""
    task: asyncio.Task[Any] = asyncio.ensure_future(component.run(stop))
    task.set_name(health.name)
    health.task = task
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled() or _cancelling():
            raise
        return RuntimeError("its task was cancelled")
    except Exception as exc:  # noqa: BLE001 - any crash is reported and the component restarted
        return exc
    if stop.is_set():
        return None
    return RuntimeError("it stopped without being asked to")


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _failed(exc: BaseException) -> asyncio.Task[Any]:
    """A finished task holding ``exc``: what the health report shows while it waits."""

    async def raise_it() -> None:
        raise exc

    task = asyncio.ensure_future(raise_it())
    task.add_done_callback(lambda t: t.exception())  # retrieved: no "never retrieved" warning
    return task
