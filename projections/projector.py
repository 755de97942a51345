"""The projector: ``registry.events`` -> SQLite, one transaction per batch with its position.

On start it checks that the log is the history the file was built from (topic, cluster id,
the last stored record; see ``guard``), reloads the in-memory fold from ``models`` and seeks
to the stored positions; Kafka group offsets are committed only for lag dashboards. It reads
through the shared ``LogFollower``; a log shorter than a stored position is a history
mismatch, never a silent jump.

The loop overlaps work: while batch *k* is written (SQLite runs in aiosqlite's thread, or in
the rebuild's writer process, and releases the GIL), batch *k+1* is fetched and folded. A
batch's write is awaited before the next one starts, so positions are committed in order.

``rebuild`` replays the log from offset 0 into a new file (a bulk projector: no journal,
indexes built at the end) and swaps it in atomically (``projections.swap``); a projector
opening a file of another schema version rebuilds it that way first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from projections.bulk import BulkWriter
from projections.errors import ProjectionHistoryMismatch, ProjectionReplaced
from projections.guard import verify_stored_record
from projections.rows import BatchRows, fold_batch
from projections.schema import SCHEMA_VERSION, projection_path
from projections.swap import remove_files, swap_in
from projections.writer import ProjectionWriter
from registry.core.chain import Chain
from registry.core.state import RegistryState
from registry.infra.kafka.clients import make_producer, start_client
from registry.infra.kafka.dlq import send_to_dlq
from registry.infra.kafka.follower import LogFollower, LogShortened
from registry.infra.kafka.topics import cluster_id
from registry.infra.settings import Settings

__all__ = [
    "Progress",
    "Projector",
    "ProjectorStats",
    "RebuildResult",
    "projection_path",
    "rebuild",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called after each batch with (records processed since open, records still behind)."""


@dataclass
class ProjectorStats:
    """Progress counters; ``last_progress_monotonic`` is what a health check judges."""

    events_applied: int = 0
    records: int = 0
    careful: int = 0  # records the fast check left to the careful path
    errors: int = 0
    dead_letters: int = 0
    batches: int = 0
    lag: int = 0
    caught_up: bool = False
    last_progress_monotonic: float = field(default_factory=time.monotonic)


class Projector:
    """Keeps the projection file at ``db_path`` up to date with ``registry.events``.

    ``catch_up()`` applies everything up to the fetch high watermark; ``run(stop)`` follows
    the log until ``stop`` is set. Both open the projector when needed; ``run`` closes what
    it opened. Usable as ``async with``.

    ``bulk`` (used by rebuilds into a private file): no journal, indexes built at the end.
    ``dlq``: copy unreadable records to ``registry.events.dlq`` (a rebuild does not, the
    live projector already did).
    """

    def __init__(
        self,
        settings: Settings,
        db_path: Path,
        *,
        dlq: bool = True,
        bulk: bool = False,
        max_records: int | None = None,
        progress: Progress | None = None,
        commit_group_offsets: bool | None = None,
    ) -> None:
        self.settings = settings
        self.db_path = Path(db_path)
        self.topic = settings.topic("registry.events")
        self.stats = ProjectorStats()
        self.ready = asyncio.Event()
        self.writer: ProjectionWriter | BulkWriter = (
            BulkWriter(self.db_path) if bulk else ProjectionWriter(self.db_path)
        )
        self._dlq = dlq
        self._bulk = bulk
        self._max_records = max_records or settings.projector.max_records
        self._progress = progress
        self._group = (not bulk) if commit_group_offsets is None else commit_group_offsets
        self._follower: LogFollower | None = None
        self._producer: AIOKafkaProducer | None = None
        self._state = RegistryState()
        self._chain = Chain()
        self._committed: dict[int, int] = {}
        self._open = False
        self._last_group_commit = 0.0
        self._inflight: asyncio.Task[int] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the file (rebuilding it on a schema change), check the history, seek.

        Raises:
            ProjectionHistoryMismatch: the log is not the history the file was built from.
            BrokerUnavailable: Kafka could not be reached.
        """
        if self._open:
            return
        version = await self.writer.open()
        try:
            if version is not None and version != SCHEMA_VERSION and not self._bulk:
                await self.writer.close()
                log.warning(
                    "projection %s has schema %s, this build needs %s: rebuilding",
                    self.db_path,
                    version,
                    SCHEMA_VERSION,
                )
                await rebuild(self.settings, self.db_path)
                await self.writer.open()
            await self._check_meta()
            self._state = await self.writer.load_state()
            self._chain = await self.writer.load_chain()
            self._committed = await self.writer.checkpoints(self.topic)
            await self._start_follower()
            await self._seek_stored(verify=True)
        except BaseException:
            await self._close_clients()
            raise
        self._open = True

    async def _check_meta(self) -> None:
        stored_topic = await self.writer.meta("topic")
        if stored_topic is not None and stored_topic != self.topic:
            raise ProjectionHistoryMismatch(
                f"{self.db_path} was built from topic {stored_topic}, not {self.topic}"
            )
        current = await cluster_id(self.settings)
        stored_cluster = await self.writer.meta("cluster_id")
        if stored_cluster is not None and current is not None and stored_cluster != current:
            raise ProjectionHistoryMismatch(
                f"{self.db_path} was built from Kafka cluster {stored_cluster}, "
                f"the broker now is cluster {current}"
            )
        values = {"topic": self.topic}
        if current is not None:
            values["cluster_id"] = current
        await self.writer.set_meta(values)

    async def _start_follower(self) -> None:
        group: dict[str, Any] = {}
        if self._group:
            group["group_id"] = self.settings.topic("registry.projector")
        follower = LogFollower(
            self.settings,
            [self.topic],
            name="projector",
            max_records=self._max_records,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **group,
        )
        await follower.start()
        self._follower = follower
        missing = set(self._committed) - {tp.partition for tp in follower.partitions}
        if missing:
            raise ProjectionHistoryMismatch(
                f"{self.topic} has no partition {sorted(missing)} any more"
            )

    def _require_follower(self) -> LogFollower:
        if self._follower is None:
            raise RuntimeError("the projector is not open")
        return self._follower

    async def _seek_stored(self, verify: bool) -> None:
        follower = self._require_follower()
        positions = {}
        for tp in follower.partitions:
            position = self._committed.get(tp.partition, 0)
            if verify and position > 0:
                stored = await self.writer.last_stored(tp.partition)
                if stored is not None:
                    await verify_stored_record(follower.consumer, tp, stored, position)
            positions[tp] = position
        await follower.seek(positions)

    async def close(self) -> None:
        """Stop the clients and close the file (positions are already committed)."""
        self._open = False
        try:
            await self._close_clients()
        finally:
            if self._bulk:
                gc.unfreeze()

    async def _close_clients(self) -> None:
        follower, self._follower = self._follower, None
        producer, self._producer = self._producer, None
        if follower is not None:
            await follower.stop()
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        await self.writer.close()

    async def __aenter__(self) -> Projector:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ public loops

    async def catch_up(self) -> int:
        """Apply everything up to the fetch high watermark; returns the records processed."""
        opened_here = not self._open
        await self.open()
        try:
            return await self._pump(None)
        finally:
            if opened_here:
                await self.close()

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 5.0) -> None:
        """Follow ``registry.events`` until ``stop`` is set, then apply what the log holds
        by then (for at most ``drain_timeout`` seconds): on the embedded broker the
        projection is the durable copy of the log, so a clean stop leaves nothing behind."""
        opened_here = not self._open
        await self.open()
        try:
            await self._pump(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump(None), drain_timeout)
        finally:
            if opened_here:
                await self.close()

    # ------------------------------------------------------------------ the loop

    async def _pump(self, stop: asyncio.Event | None) -> int:
        """Fetch, fold and write until caught up (``stop`` None) or until ``stop`` is set."""
        follower = self._require_follower()
        # Following the log: return to check ``stop`` regularly; catching up: wait for data.
        poll_ms = 200 if stop is not None else 500
        done = 0
        try:
            while stop is None or not stop.is_set():
                try:
                    batch = await follower.poll(poll_ms)
                except LogShortened as exc:
                    raise ProjectionHistoryMismatch(str(exc)) from exc
                records = [r for tp in follower.partitions for r in batch.get(tp, ())]
                if records:
                    rows = fold_batch(self._state, records, chain=self._chain)
                    done += await self._submit(rows)
                    if self._bulk:
                        # The fold's state is large, long-lived and acyclic: spare it the
                        # collector's full passes (undone when the rebuild closes).
                        gc.freeze()
                self.stats.lag = follower.stats.lag
                self.stats.caught_up = follower.caught_up()
                if self.stats.caught_up:
                    written = await self._drain()
                    if written < 0:
                        continue  # reloaded from the file: not caught up after all
                    done += written
                    self._on_caught_up()
                    if stop is None:
                        return done
        finally:
            done += max(0, await self._drain())
        return done

    async def _submit(self, rows: BatchRows) -> int:
        """Wait for the previous batch's write, then start this one's; returns records written."""
        written = await self._drain()
        if written < 0:
            return 0  # reloaded from the file: these rows came from a stale fold, drop them
        self._inflight = asyncio.create_task(self._write(rows))
        return written

    async def _drain(self) -> int:
        """Await the write in flight, if any: its records, or -1 when the state was reloaded."""
        task, self._inflight = self._inflight, None
        if task is None:
            return 0
        try:
            return await task
        except ProjectionReplaced as exc:
            log.warning("%s; reloading the projection state and positions", exc)
            await self._reload()
            return -1

    def _on_caught_up(self) -> None:
        self.stats.last_progress_monotonic = time.monotonic()
        self.ready.set()
        if self._progress is not None:
            self._progress(self.stats.records, 0)

    async def _reload(self) -> None:
        self._state = await self.writer.load_state()
        self._chain = await self.writer.load_chain()
        self._committed = await self.writer.checkpoints(self.topic)
        await self._seek_stored(verify=False)

    async def _write(self, rows: BatchRows) -> int:
        if rows.dead_letters and self._dlq:
            producer = await self._dlq_producer()
            for record, reason in rows.dead_letters:
                await send_to_dlq(producer, record, reason)  # before the commit: at least once
        await self.writer.write(self.topic, rows, self._committed)
        self._committed.update(rows.positions)
        s = self.stats
        s.events_applied += rows.applied
        s.records += rows.records
        s.careful += rows.careful
        s.errors += len(rows.errors)
        s.dead_letters += len(rows.dead_letters) if self._dlq else 0
        s.batches += 1
        s.last_progress_monotonic = time.monotonic()
        for error in rows.errors:
            log.warning(
                "projection error at %s[%s]@%s: %s",
                self.topic,
                error[0],
                error[1],
                error[3],
                extra={"kind": error[2], "partition": error[0], "offset": error[1]},
            )
        if self._progress is not None:
            self._progress(s.records, s.lag)
        await self._commit_group_offsets()
        return rows.records

    async def _dlq_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self.settings)
            await start_client(producer, self.settings)
            self._producer = producer
        return self._producer

    async def _commit_group_offsets(self) -> None:
        """Best effort, at most once a second: only dashboards read these."""
        follower = self._follower
        if not self._group or follower is None:
            return
        if time.monotonic() - self._last_group_commit < 1.0:
            return
        self._last_group_commit = time.monotonic()
        offsets = {
            tp: self._committed[tp.partition]
            for tp in follower.partitions
            if tp.partition in self._committed
        }
        if offsets:
            try:
                await follower.consumer.commit(offsets)
            except KafkaError as exc:
                log.debug("group offset commit failed (dashboards only): %s", exc)


# --------------------------------------------------------------------------- rebuild


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did."""

    records: int
    events_applied: int
    errors: int
    seconds: float
    path: Path
    careful: int = 0  # records decoded by the careful path (the rest took the fast one)
    swap_seconds: float = 0.0  # of ``seconds``: swapping the built file in (``swap_in``)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    settings: Settings, db_path: Path, *, progress: Progress | None = None, max_records: int = 10000
) -> RebuildResult:
    """Rebuild the projection at ``db_path`` from offset 0 and swap it in atomically."""
    started = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".rebuild")
    remove_files(tmp)
    try:
        projector = Projector(
            settings, tmp, bulk=True, dlq=False, progress=progress, max_records=max_records
        )
        async with projector:
            records = await projector.catch_up()
            await projector.writer.create_indexes()
        swap_started = time.perf_counter()
        await asyncio.to_thread(swap_in, tmp, db_path)
        swap_seconds = time.perf_counter() - swap_started
    finally:
        remove_files(tmp)
    s = projector.stats
    return RebuildResult(
        records,
        s.events_applied,
        s.errors,
        time.perf_counter() - started,
        db_path,
        s.careful,
        swap_seconds,
    )
